"""``text2image:<model id>``: the no-layout baseline, any text-to-image model diffusers' auto
pipeline knows (SDXL ``stabilityai/stable-diffusion-xl-base-1.0``, SD 3.5
``stabilityai/stable-diffusion-3.5-large``, FLUX ``black-forest-labs/FLUX.1-dev``, ...).

It ignores the layout and says so in the round's notes: use it for the thesis's plain baselines
(``--mode plain``) or to see what the bare model does. Default size: the model's own (its UNet or
transformer sample size times the VAE scale), else 1024 x 1024; steps and guidance: the pipeline's.
Batches (``generate_batch``): one pipeline call for requests that share size, steps, guidance and
whether they have a negative prompt, each with its own prompt and seed.

Repair (``supports_repair``, UNet models: SD, SDXL): a request with ``repair`` set repaints only the
mask with blended latents (``backends.latent_blend``) on the same pipeline, ungrounded like every
render of this backend. Flow-matching models (FLUX, SD3) have no repair path here: the run renders
anew and records why.
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.backends.diffusers_base import GroupRenderer, load_pipeline, negative_prompts, quiet
from mllm_guidance.backends.generator import Generated, GenerationRequest
from mllm_guidance.backends.grounding import fit_size
from mllm_guidance.backends.latent_blend import prepare_repair
from mllm_guidance.backends.torch_device import seeded_generator
from mllm_guidance.errors import BackendError


class Text2ImageGenerator(GroupRenderer):
    name = "text2image"

    def __init__(self, model: str | None = None, *, device: str | None = None, dtype: str | None = None,
                 cpu_offload: bool = False, attention_slicing: bool = False, scheduler: str | None = None,
                 compile: bool | str = False, vae_tiling: bool = False) -> None:
        if not model:
            raise BackendError("text2image needs a model: --generator text2image:stabilityai/stable-diffusion-xl-base-1.0")

        def load(torch_dtype: Any) -> Any:
            from diffusers import AutoPipelineForText2Image

            return AutoPipelineForText2Image.from_pretrained(model, torch_dtype=torch_dtype)

        self.model = model
        self.pipe, self.device, self.dtype = load_pipeline(
            "text2image", model, load, device=device, dtype=dtype, cpu_offload=cpu_offload, attention_slicing=attention_slicing,
            scheduler=scheduler, compile=compile, vae_tiling=vae_tiling,
        )
        denoiser = getattr(self.pipe, "unet", None) or getattr(self.pipe, "transformer", None)
        sample = getattr(getattr(denoiser, "config", None), "sample_size", None)
        scale = getattr(self.pipe, "vae_scale_factor", 8)
        side = sample * scale if isinstance(sample, int) else 1024
        self.default_size = (side, side)
        self.supports_repair = getattr(self.pipe, "unet", None) is not None and hasattr(self.pipe.scheduler, "add_noise")

    def _render_group(self, requests: list[GenerationRequest]) -> list[Generated]:
        first, single = requests[0], len(requests) == 1
        width, height, notes = fit_size(first.width, first.height, 16)
        kwargs: dict[str, Any] = {
            "prompt": first.prompt if single else [r.prompt for r in requests], "height": height, "width": width,
            "generator": seeded_generator(first.seed) if single else [seeded_generator(r.seed) for r in requests],
        }
        negatives = negative_prompts(requests)
        if negatives is not None:
            kwargs["negative_prompt"] = negatives[0] if single else negatives
        if first.steps is not None:
            kwargs["num_inference_steps"] = first.steps
        if first.guidance_scale is not None:
            kwargs["guidance_scale"] = first.guidance_scale
        if first.repair is not None:
            if not self.supports_repair:
                raise BackendError(f"text2image: {self.model} has no repair path (a UNet model is needed)")
            encoder = getattr(self.pipe, "text_encoder_2", None) or self.pipe.text_encoder
            kwargs["latents"], kwargs["callback_on_step_end"] = prepare_repair(
                self.pipe, first.repair.image, first.repair.boxes, kwargs["generator"], len(requests), width, height, encoder.dtype)
        with quiet():
            images = self.pipe(**kwargs).images
        out = []
        for request, image in zip(requests, images, strict=True):
            ignored = ["text2image ignores the layout"] if request.layout is not None and not request.layout.is_empty else []
            out.append(Generated(image=image, notes=notes + ignored))
        return out
