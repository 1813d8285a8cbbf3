"""``gligen``: GLIGEN on Stable Diffusion 1.x/2.x, with this project's own pipeline
(``layout_pipelines/gligen_sd_pipeline.py``; diffusers moved its ``StableDiffusionGLIGENPipeline`` to
``deprecated/``, and nothing here imports from there).

Models: ``masterful/gligen-1-4-generation-text-box`` (default, SD 1.4, the GLIGEN authors' weights)
and ``longlian/igligen-sd2.1-v1.0`` (IGLIGEN on SD 2.1); a local directory with the same layout
works too (a diffusers folder whose UNet has ``attention_type="gated"``). Native box format:
normalized corners ``[x1, y1, x2, y2]``, the project's own. Default size 512 x 512, 50 steps,
guidance 7.5, scheduled-sampling beta 0.3 (the fraction of timesteps with grounding on). The GLIGEN
authors publish no inference memory or speed figures for this checkpoint; as a rough guide, SD 1.x
at 512 x 512 in fp16 fits in about 4 GB of GPU memory (``benchmarks/gpu_smoke.py`` measures the
pipeline code on a GPU).

Proven against diffusers' own ``StableDiffusionGLIGENPipeline`` (0.42.1): bit-identical final latents
on a tiny seeded model, checked in CI against a golden (``scripts/record_goldens.py``,
``tests/backends/test_goldens.py``) and side by side while diffusers still ships that class.

Input the pipeline would refuse or drop, handled here: an empty layout renders without grounding on
the same components; more than 30 objects keeps the 30 largest and says so; phrases over 77 tokens
are cut and say so; sizes not divisible by 8 are rounded down.

Batches (``generate_batch``): the pipeline takes a layout per prompt, so one call renders several
requests that share size, steps and guidance and are either all grounded or all plain
(``batch_key``); each image equals its lone render to float rounding (tested on a tiny model).

Repair (``supports_repair``): a request with ``repair`` set passes the pipeline's ``repair_image`` and
``repair_boxes``, its blended-latent path (``backends.latent_blend``): only the mask is repainted,
grounded on the new layout. (diffusers' ``gligen_inpaint_image`` is not the way: it masks every
grounded box, not the changed ones, blends with unseeded noise, and is meant for the GLIGEN
inpainting checkpoint.) Candidate repairs of one image with one mask share a batch.
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.backends.batching import in_groups
from mllm_guidance.backends.diffusers_base import load_pipeline, negative_prompts, quiet
from mllm_guidance.backends.generator import Generated, GenerationRequest, shared_settings
from mllm_guidance.backends.diffusers_base import repair_inputs
from mllm_guidance.backends.grounding import fit_size, grounding_inputs
from mllm_guidance.backends.torch_device import seeded_generator
from mllm_guidance.errors import BackendError

DEFAULT_MODEL = "masterful/gligen-1-4-generation-text-box"


def load_gligen(path: str, torch_dtype: Any = None, *, safety_checker: bool = True) -> Any:
    """The project's ``StableDiffusionGLIGENPipeline`` from a checkpoint folder (local path or hub id)."""
    from mllm_guidance.backends.layout_pipelines.gligen_sd_pipeline import StableDiffusionGLIGENPipeline

    kw: dict[str, Any] = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
    if not safety_checker:
        kw.update(safety_checker=None, requires_safety_checker=False)
    pipe = StableDiffusionGLIGENPipeline.from_pretrained(path, **kw)
    if pipe.unet.config.get("attention_type") != "gated" or getattr(pipe.unet, "position_net", None) is None:
        raise ValueError(f"{path}/unet is not a GLIGEN UNet (attention_type must be 'gated'); use --generator text2image")
    return pipe


class GligenGenerator:
    name = "gligen"
    default_size = (512, 512)
    supports_repair = True

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str | None = None, dtype: str | None = None,
                 cpu_offload: bool = False, attention_slicing: bool = False, scheduler: str | None = None,
                 compile: bool | str = False, vae_tiling: bool = False, beta: float = 0.3,
                 steps: int = 50, guidance_scale: float = 7.5, safety_checker: bool = True) -> None:
        self.model, self.beta, self.steps, self.guidance_scale = model, beta, steps, guidance_scale
        self.pipe, self.device, self.dtype = load_pipeline(
            "gligen", model, lambda td: load_gligen(model, td, safety_checker=safety_checker), device=device, dtype=dtype,
            cpu_offload=cpu_offload, attention_slicing=attention_slicing, scheduler=scheduler, compile=compile,
            vae_tiling=vae_tiling,
        )

    def generate(self, request: GenerationRequest) -> Generated:
        return self._render_group([request])[0]

    def batch_key(self, request: GenerationRequest) -> tuple[Any, ...]:
        return shared_settings(request, negative="none", grounding=True)

    def generate_batch(self, requests: list[GenerationRequest]) -> list[Generated]:
        return in_groups(requests, self.batch_key, self._render_group)

    def _render_group(self, requests: list[GenerationRequest]) -> list[Generated]:
        """Requests that share ``batch_key`` (size, steps, guidance, grounded or not, the repair) in one
        call, each prompt on its own layout and seed."""
        first = requests[0]
        width, height, size_notes = fit_size(first.width, first.height)
        inputs = [grounding_inputs(r.layout, [self.pipe.tokenizer]) for r in requests]
        try:
            with quiet():
                images = self.pipe(
                    [r.prompt for r in requests], negative_prompt=negative_prompts(requests), height=height, width=width,
                    num_inference_steps=first.steps or self.steps,
                    guidance_scale=first.guidance_scale if first.guidance_scale is not None else self.guidance_scale,
                    generator=[seeded_generator(r.seed) for r in requests],
                    gligen_phrases=[p for p, _, _ in inputs], gligen_boxes=[b for _, b, _ in inputs],
                    gligen_scheduled_sampling_beta=self.beta, **repair_inputs(first),
                ).images
        except ValueError as exc:
            raise BackendError(f"gligen could not render: {exc}") from exc
        return [Generated(image=image, notes=size_notes + notes) for image, (_, _, notes) in zip(images, inputs, strict=True)]
