"""What the project's FLUX pipelines (``regional_flux_pipeline``, ``siamlayout_flux``) share around
their denoising loops: the size check, the prompt and initial latents, the flow-matching schedule
with FLUX.1-dev's guidance input, the repair blend and the decode. Each is the matching step of
diffusers' ``FluxPipeline.__call__``, so the two loops differ only in how they predict the noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps
from diffusers.pipelines.flux.pipeline_output import FluxPipelineOutput

from mllm_guidance.backends.latent_blend import FlowBlend, prepare_flux_repair, wants_repair


def image_size(pipe: Any, height: int | None, width: int | None) -> tuple[int, int, int]:
    """(height, width, cell): the pipeline's default size where none is given; a transformer token
    covers ``cell`` x ``cell`` pixels, so both sides must be multiples of it."""
    height = height or pipe.default_sample_size * pipe.vae_scale_factor
    width = width or pipe.default_sample_size * pipe.vae_scale_factor
    cell = pipe.vae_scale_factor * 2
    if height % cell or width % cell:
        raise ValueError(f"height and width must be multiples of {cell}, got {width}x{height}")
    return height, width, cell


def start(pipe: Any, prompts: list[str], height: int, width: int, guidance_scale: float, generator: Any,
          latents: torch.Tensor | None, max_sequence_length: int) -> tuple[torch.Tensor, ...]:
    """(prompt embeddings, pooled embeddings, text ids, packed initial latents, image ids), with the
    pipeline's per-call attributes reset as ``FluxPipeline`` resets them."""
    pipe._guidance_scale = guidance_scale
    pipe._joint_attention_kwargs = {}
    pipe._interrupt = False
    device = pipe._execution_device
    prompt_embeds, pooled, text_ids = pipe.encode_prompt(prompt=prompts, prompt_2=None, device=device,
                                                         max_sequence_length=max_sequence_length)
    latents, image_ids = pipe.prepare_latents(len(prompts), pipe.transformer.config.in_channels // 4, height, width,
                                              prompt_embeds.dtype, device, generator, latents)
    return prompt_embeds, pooled, text_ids, latents, image_ids


def repair_blend(pipe: Any, repair_image: Any, repair_boxes: Sequence[Sequence[float]] | None, latents: torch.Tensor,
                 width: int, height: int) -> FlowBlend | None:
    """The blend that repaints only inside ``repair_boxes`` (``backends.latent_blend``), None without a repair."""
    if not wants_repair(repair_image, repair_boxes):
        return None
    return prepare_flux_repair(pipe, repair_image, repair_boxes, latents, width, height)


def schedule(pipe: Any, num_inference_steps: int, latents: torch.Tensor,
             guidance_scale: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(timesteps, guidance input): FLUX's shifted sigmas for this many image tokens, and the guidance
    scale as the transformer's input where it has a guidance embedding (FLUX.1-dev; None for schnell)."""
    device = pipe._execution_device
    sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
    config = pipe.scheduler.config
    mu = calculate_shift(latents.shape[1], config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                         config.get("base_shift", 0.5), config.get("max_shift", 1.15))
    timesteps, _ = retrieve_timesteps(pipe.scheduler, num_inference_steps, device, sigmas=sigmas, mu=mu)
    pipe._num_timesteps = len(timesteps)
    guidance = None
    if pipe.transformer.config.guidance_embeds:
        guidance = torch.full([1], guidance_scale, device=device, dtype=torch.float32).expand(latents.shape[0])
    pipe.scheduler.set_begin_index(0)
    return timesteps, guidance


def finish(pipe: Any, latents: torch.Tensor, height: int, width: int, output_type: str, return_dict: bool) -> Any:
    """The pipeline's output: the packed latents as they are (``output_type="latent"``) or decoded."""
    pipe._current_timestep = None
    if output_type == "latent":
        image = latents
    else:
        latents = pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
        latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        image = pipe.vae.decode(latents.to(pipe.vae.dtype), return_dict=False)[0]
        image = pipe.image_processor.postprocess(image, output_type=output_type)
    pipe.maybe_free_model_hooks()
    return FluxPipelineOutput(images=image) if return_dict else (image,)
