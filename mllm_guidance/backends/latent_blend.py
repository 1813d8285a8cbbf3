"""Blended-latent repair for diffusers pipelines: keep the latents outside a mask on the original image.

At every denoising step, after the scheduler's step, the latents outside the mask are replaced by
the original image's latents noised to the next step's level (the clean latents after the last
step): Avrahami et al.'s Blended Latent Diffusion, as diffusers' ``StableDiffusionInpaintPipeline``
does it for 4-channel UNets. The noise is the render's own initial noise (drawn here from the
request's generator and handed to the pipeline as ``latents``), so a repair is as deterministic as
a render and a batch of repairs equals its lone repairs. Works with any pipeline that takes
``latents`` and ``callback_on_step_end`` and whose scheduler has ``add_noise`` (DDIM, PNDM, Euler,
DPM-Solver: the SD and SDXL pipelines); ``FlowBlend`` is its flow-matching twin (FLUX,
SD3, Qwen-Image). ``mllm_guidance.repair.composite`` then restores the original's exact pixels
outside the mask.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from mllm_guidance.repair import latent_mask


def encode_image(pipe: Any, image: Any, width: int, height: int, device: Any) -> torch.Tensor:
    """The image's latents (the VAE posterior's mean, scaled as the pipeline scales them); an SDXL
    VAE that overflows in fp16 (``force_upcast``) encodes in fp32, as the SDXL pipelines decode."""
    vae = pipe.vae
    upcast = vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    dtype = torch.float32 if upcast else vae.dtype
    if upcast:
        vae.to(torch.float32)
    try:
        pixels = pipe.image_processor.preprocess(image.convert("RGB"), height=height, width=width).to(device, dtype)
        latents = vae.encode(pixels).latent_dist.mean
    finally:
        if upcast:
            vae.to(torch.float16)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


class LatentBlend:
    """A ``callback_on_step_end``: after step i, latents = m * latents + (1 - m) * noised original."""

    def __init__(self, image_latents: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor) -> None:
        self.image_latents, self.mask, self.noise = image_latents, mask, noise

    def __call__(self, pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        latents = tensors["latents"]
        original = self.image_latents.to(latents.device, latents.dtype).expand_as(latents)
        timesteps = pipe.scheduler.timesteps
        if step + 1 < len(timesteps):
            original = pipe.scheduler.add_noise(original, self.noise.to(latents.device, latents.dtype),
                                                timesteps[step + 1 : step + 2])
        mask = self.mask.to(latents.device, latents.dtype)
        tensors["latents"] = mask * latents + (1 - mask) * original
        return tensors


def wants_repair(repair_image: Any, repair_boxes: Sequence[Sequence[float]] | None) -> bool:
    """Whether a pipeline call asks for a repair; an image without the boxes to repaint is an error."""
    if repair_image is None:
        return False
    if not repair_boxes:
        raise ValueError("repair_image needs repair_boxes: the region to repaint")
    return True


def prepare_repair(pipe: Any, image: Any, boxes: Sequence[Sequence[float]], generator: Any, samples: int,
                   width: int, height: int, dtype: Any) -> tuple[torch.Tensor, LatentBlend]:
    """(initial noise to pass as ``latents``, the blending callback) for ``samples`` repairs of
    ``image`` inside ``boxes``. The noise is what the pipeline itself would draw from ``generator``."""
    noise, image_latents = _noise_and_image(pipe, pipe.unet, image, generator, samples, width, height, dtype)
    return noise, LatentBlend(image_latents, latent_mask(boxes, width, height, pipe.vae_scale_factor), noise)


def _noise_and_image(pipe: Any, denoiser: Any, image: Any, generator: Any, samples: int, width: int, height: int,
                     dtype: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(the initial noise on the latent grid, as the pipeline would draw it from ``generator``; the
    image's latents)."""
    from diffusers.utils.torch_utils import randn_tensor

    device = pipe._execution_device
    scale = pipe.vae_scale_factor
    shape = (samples, denoiser.config.in_channels, height // scale, width // scale)
    noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    with torch.no_grad():
        return noise, encode_image(pipe, image, width, height, device)


def chain(*callbacks: Callable[..., dict[str, Any]] | None) -> Callable[..., dict[str, Any]] | None:
    """One ``callback_on_step_end`` running the given ones in order (None where there are none)."""
    present = [c for c in callbacks if c is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def run(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        for callback in present:
            tensors = callback(pipe, step, timestep, tensors)
        return tensors

    return run


class FlowBlend:
    """The flow-matching twin of ``LatentBlend`` (FLUX, SD3): after step i the latents outside the mask
    are ``sigma * noise + (1 - sigma) * original`` at the next sigma of the schedule (0 after the last
    step: the original itself). Works on packed FLUX tokens and on SD3's latent grid alike, given a
    mask of the same layout."""

    def __init__(self, image_latents: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor) -> None:
        self.image_latents, self.mask, self.noise = image_latents, mask, noise

    def __call__(self, pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        latents = tensors["latents"]
        sigmas = pipe.scheduler.sigmas
        sigma = sigmas[step + 1].to(latents.device, latents.dtype) if step + 1 < len(sigmas) else 0.0
        original = self.image_latents.to(latents.device, latents.dtype).expand_as(latents)
        noised = sigma * self.noise.to(latents.device, latents.dtype) + (1 - sigma) * original
        mask = self.mask.to(latents.device, latents.dtype)
        tensors["latents"] = mask * latents + (1 - mask) * noised
        return tensors


def prepare_flux_repair(pipe: Any, image: Any, boxes: Sequence[Sequence[float]], noise: torch.Tensor,
                        width: int, height: int) -> FlowBlend:
    """The blend for a FLUX pipeline whose packed initial noise is ``noise`` (batch, tokens, 64): the
    image's latents packed like it, and the mask on the token grid (16 x 16-pixel cells)."""
    device = pipe._execution_device
    with torch.no_grad():
        latents = encode_image(pipe, image, width, height, device)
    _, channels, h, w = latents.shape
    packed = pipe._pack_latents(latents, 1, channels, h, w)
    mask = latent_mask(boxes, width, height, pipe.vae_scale_factor * 2).flatten(2).transpose(1, 2)  # (1, tokens, 1)
    return FlowBlend(packed, mask, noise.clone())


def prepare_sd3_repair(pipe: Any, image: Any, boxes: Sequence[Sequence[float]], generator: Any, samples: int,
                       width: int, height: int, dtype: Any) -> tuple[torch.Tensor, FlowBlend]:
    """(initial noise to pass as ``latents``, the blending callback) for an SD3 pipeline: the noise
    is what the pipeline would draw from ``generator``; the mask is on the latent grid."""
    noise, image_latents = _noise_and_image(pipe, pipe.transformer, image, generator, samples, width, height, dtype)
    return noise, FlowBlend(image_latents, latent_mask(boxes, width, height, pipe.vae_scale_factor), noise)


def prepare_qwen_repair(pipe: Any, image: Any, boxes: Sequence[Sequence[float]], noise: torch.Tensor,
                        width: int, height: int) -> FlowBlend:
    """The blend for a Qwen-Image pipeline whose packed initial noise is ``noise`` (batch, tokens, 64):
    the image's latents (its video VAE on one frame, normalized by the VAE's per-channel mean and std
    as the pipeline un-normalizes them to decode), packed like the noise, and the mask on the token
    grid (16 x 16-pixel cells)."""
    device = pipe._execution_device
    vae = pipe.vae
    with torch.no_grad():
        pixels = pipe.image_processor.preprocess(image.convert("RGB"), height=height, width=width).to(device, vae.dtype)
        latents = vae.encode(pixels[:, :, None]).latent_dist.mean[:, :, 0]
    channels = latents.shape[1]
    mean = torch.tensor(vae.config.latents_mean).view(1, channels, 1, 1).to(latents.device, latents.dtype)
    std = torch.tensor(vae.config.latents_std).view(1, channels, 1, 1).to(latents.device, latents.dtype)
    latents = (latents - mean) / std
    _, _, h, w = latents.shape
    packed = pipe._pack_latents(latents, 1, channels, h, w)
    mask = latent_mask(boxes, width, height, pipe.vae_scale_factor * 2).flatten(2).transpose(1, 2)  # (1, tokens, 1)
    return FlowBlend(packed, mask, noise.clone())
