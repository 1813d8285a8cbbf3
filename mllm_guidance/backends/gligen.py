"""``gligen``: GLIGEN on Stable Diffusion through diffusers' ``StableDiffusionGLIGENPipeline``.

Models: ``masterful/gligen-1-4-generation-text-box`` (default, SD 1.4, the GLIGEN authors' weights)
and ``longlian/igligen-sd2.1-v1.0`` (IGLIGEN on SD 2.1); a local directory with the same layout
works too. Native box format: normalized corners ``[x1, y1, x2, y2]``, the project's own. Default
size 512 x 512, 50 steps, guidance 7.5, scheduled-sampling beta 0.3 (the fraction of steps with
grounding on). The GLIGEN authors publish no inference memory or speed figures for this
checkpoint; as a rough guide, SD 1.x at 512 x 512 in fp16 fits in about 4 GB of GPU memory
(``benchmarks/gpu_smoke.py`` measures the pipeline code on a GPU).

What the pipeline does not handle, handled here: an empty layout (the pipeline raises on empty
lists) renders without grounding on the same components; more than 30 objects (the pipeline
silently drops the rest) keeps the 30 largest and says so; phrases over 77 tokens (the pipeline
raises) are cut; sizes not divisible by 8 are rounded down. The pipeline class is deprecated in
diffusers and lives on in ``diffusers.pipelines.deprecated``: the pinned range (< 0.43) has it.

Batches (``generate_batch``): that pipeline grounds every sample of a call on one layout, so a batch
with a layout per prompt runs Stable Diffusion on the same components with GLIGEN's grounding
inputs built per sample (``gligen_grounding``: the pipeline's own recipe, one row per sample), the
fusers switched off after the same number of steps; each image equals its lone render to float
rounding (tested on a tiny model). A batch shares size, steps and guidance, and is either all
grounded or all plain (``batch_key``).

Repair (``supports_repair``): a request with ``repair`` set runs that same per-sample path with
blended latents (``backends.latent_blend``): only the mask is repainted, grounded on the new layout.
The diffusers pipeline's own ``gligen_inpaint_image`` is not used: it masks every grounded box (not
the changed ones), blends with unseeded noise, and is meant for the GLIGEN inpainting checkpoint.
Candidate repairs of one image with one mask share a batch.
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.backends.batching import in_groups
from mllm_guidance.backends.diffusers_base import first_image, load_pipeline, negative_prompts, quiet
from mllm_guidance.backends.generator import Generated, GenerationRequest, shared_settings
from mllm_guidance.backends.grounding import GLIGEN_MAX_OBJECTS, fit_size, grounding_inputs
from mllm_guidance.backends.latent_blend import chain, prepare_repair
from mllm_guidance.backends.torch_device import seeded_generator

DEFAULT_MODEL = "masterful/gligen-1-4-generation-text-box"


class GligenGenerator:
    name = "gligen"
    default_size = (512, 512)
    supports_repair = True

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str | None = None, dtype: str | None = None,
                 cpu_offload: bool = False, attention_slicing: bool = False, scheduler: str | None = None,
                 compile: bool | str = False, vae_tiling: bool = False, beta: float = 0.3,
                 steps: int = 50, guidance_scale: float = 7.5, safety_checker: bool = True) -> None:
        def load(torch_dtype: Any) -> Any:
            from diffusers import StableDiffusionGLIGENPipeline

            extra = {} if safety_checker else {"safety_checker": None, "requires_safety_checker": False}
            return StableDiffusionGLIGENPipeline.from_pretrained(model, torch_dtype=torch_dtype, **extra)

        self.model, self.beta, self.steps, self.guidance_scale = model, beta, steps, guidance_scale
        self.pipe, self.device, self.dtype = load_pipeline(
            "gligen", model, load, device=device, dtype=dtype, cpu_offload=cpu_offload, attention_slicing=attention_slicing,
            scheduler=scheduler, compile=compile, vae_tiling=vae_tiling,
        )
        self._plain: Any = None

    def plain(self) -> Any:
        """A Stable Diffusion pipeline on the same components, for renders without grounding
        (a gated UNet skips its fusers when no grounding is passed)."""
        if self._plain is None:
            from diffusers import StableDiffusionPipeline

            c = self.pipe.components
            self._plain = StableDiffusionPipeline(
                vae=c["vae"], text_encoder=c["text_encoder"], tokenizer=c["tokenizer"], unet=c["unet"],
                scheduler=c["scheduler"], safety_checker=c.get("safety_checker"),
                feature_extractor=c.get("feature_extractor"), requires_safety_checker=False,
            )
            self._plain.set_progress_bar_config(disable=True)
        return self._plain

    def generate(self, request: GenerationRequest) -> Generated:
        if request.repair is not None:
            return self._repair_group([request])[0]
        width, height, notes = fit_size(request.width, request.height)
        phrases, boxes, more = grounding_inputs(request.layout, [self.pipe.tokenizer])
        notes += more
        common = {
            "prompt": request.prompt,
            "negative_prompt": request.negative_prompt,
            "height": height,
            "width": width,
            "num_inference_steps": request.steps or self.steps,
            "guidance_scale": request.guidance_scale if request.guidance_scale is not None else self.guidance_scale,
            "generator": seeded_generator(request.seed),
        }
        with quiet():
            if not boxes:
                image = first_image(self.plain()(**common))
            else:
                image = first_image(self.pipe(**common, gligen_phrases=phrases, gligen_boxes=boxes,
                                              gligen_scheduled_sampling_beta=self.beta))
        return Generated(image=image, notes=notes)

    def batch_key(self, request: GenerationRequest) -> tuple[Any, ...]:
        return shared_settings(request, negative="none", grounding=True)

    def generate_batch(self, requests: list[GenerationRequest]) -> list[Generated]:
        return in_groups(requests, self.batch_key, self._render_group)

    def _render_group(self, requests: list[GenerationRequest]) -> list[Generated]:
        """Requests that share size, steps, guidance and whether they are grounded, in one call."""
        if requests[0].repair is not None:
            return self._repair_group(requests)
        if len(requests) == 1:
            return [self.generate(requests[0])]
        first = requests[0]
        width, height, size_notes = fit_size(first.width, first.height)
        inputs = [grounding_inputs(r.layout, [self.pipe.tokenizer]) for r in requests]
        steps = first.steps or self.steps
        common = self._group_call(requests, width, height, steps, [seeded_generator(r.seed) for r in requests])
        plain = self.plain()
        with quiet():
            if not inputs[0][1]:
                images = plain(**common).images
            else:
                images = self._grounded(plain, common, [p for p, _, _ in inputs], [b for _, b, _ in inputs], steps)
        return [Generated(image=image, notes=size_notes + notes) for image, (_, _, notes) in zip(images, inputs, strict=True)]

    def _group_call(self, requests: list[GenerationRequest], width: int, height: int, steps: int,
                    generators: list[Any]) -> dict[str, Any]:
        """The pipeline keywords a group of requests shares (one prompt and seed per request)."""
        first = requests[0]
        return {
            "prompt": [r.prompt for r in requests],
            "negative_prompt": negative_prompts(requests),
            "height": height,
            "width": width,
            "num_inference_steps": steps,
            "guidance_scale": first.guidance_scale if first.guidance_scale is not None else self.guidance_scale,
            "generator": generators,
        }

    def _repair_group(self, requests: list[GenerationRequest]) -> list[Generated]:
        """Repairs of one image inside one mask (``batch_key``), each grounded on its own layout."""
        first = requests[0]
        width, height, size_notes = fit_size(first.width, first.height)
        inputs = [grounding_inputs(r.layout, [self.pipe.tokenizer]) for r in requests]
        steps = first.steps or self.steps
        plain = self.plain()
        generators = [seeded_generator(r.seed) for r in requests]
        noise, blend = prepare_repair(plain, first.repair.image, first.repair.boxes, generators, len(requests),
                                      width, height, plain.text_encoder.dtype)
        common = {**self._group_call(requests, width, height, steps, generators), "latents": noise}
        with quiet():
            if not inputs[0][1]:
                images = plain(**common, callback_on_step_end=blend).images
            else:
                images = self._grounded(plain, common, [p for p, _, _ in inputs], [b for _, b, _ in inputs], steps, blend)
        return [Generated(image=image, notes=size_notes + notes) for image, (_, _, notes) in zip(images, inputs, strict=True)]

    def _grounded(self, plain: Any, common: dict[str, Any], phrases: list[list[str]], boxes: list[list[list[float]]],
                  steps: int, blend: Any = None) -> list[Any]:
        """Stable Diffusion with per-sample GLIGEN grounding, the fusers on for the first ``beta`` of the
        scheduler's timesteps, as ``StableDiffusionGLIGENPipeline`` runs them."""
        scheduler = plain.scheduler
        scheduler.set_timesteps(steps)
        grounded_steps = int(self.beta * len(scheduler.timesteps))
        grounding = gligen_grounding(self.pipe, phrases, boxes, common["guidance_scale"] > 1.0)

        def after_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            if step + 1 == grounded_steps:
                set_fusers(self.pipe.unet, False)
            return tensors

        set_fusers(self.pipe.unet, grounded_steps > 0)
        try:
            return plain(**common, cross_attention_kwargs={"gligen": grounding},
                         callback_on_step_end=chain(after_step, blend)).images
        finally:
            set_fusers(self.pipe.unet, True)


# Copied from mllm_guidance.backends.layout_pipelines.gligen_xl_pipeline.StableDiffusionXLGLIGENPipeline.set_fusers with self.unet->unet
def set_fusers(unet: Any, enabled: bool) -> None:
    """Switch GLIGEN's gated self-attention layers on or off (scheduled sampling)."""
    for module in unet.modules():
        if type(module).__name__ == "GatedSelfAttentionDense":
            module.enabled = enabled


def gligen_grounding(pipe: Any, phrases: list[list[str]], boxes: list[list[list[float]]], guided: bool) -> dict[str, Any]:
    """The GLIGEN position net's inputs with one layout per sample: ``StableDiffusionGLIGENPipeline``'s
    recipe (each phrase's pooled CLIP embedding, boxes and masks in 30 slots) done row by row, the
    unconditional half of classifier-free guidance ungrounded."""
    import torch

    device, dtype = pipe._execution_device, pipe.text_encoder.dtype
    batch, width = len(phrases), pipe.unet.config.cross_attention_dim
    box_t = torch.zeros(batch, GLIGEN_MAX_OBJECTS, 4, device=device, dtype=dtype)
    embeds = torch.zeros(batch, GLIGEN_MAX_OBJECTS, width, device=device, dtype=dtype)
    masks = torch.zeros(batch, GLIGEN_MAX_OBJECTS, device=device, dtype=dtype)
    with torch.no_grad():
        for i, (names, corners) in enumerate(zip(phrases, boxes, strict=True)):
            names, corners = names[:GLIGEN_MAX_OBJECTS], corners[:GLIGEN_MAX_OBJECTS]
            tokens = pipe.tokenizer(names, padding=True, return_tensors="pt").to(device)
            n = len(corners)
            embeds[i, :n] = pipe.text_encoder(**tokens).pooler_output
            box_t[i, :n] = torch.tensor(corners)
            masks[i, :n] = 1
    if guided:
        box_t, embeds, masks = torch.cat([box_t] * 2), torch.cat([embeds] * 2), torch.cat([masks] * 2)
        masks[:batch] = 0
    return {"boxes": box_t, "positive_embeddings": embeds, "masks": masks}
