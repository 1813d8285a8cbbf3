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
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.backends.diffusers_base import first_image, load_pipeline, quiet
from mllm_guidance.backends.generator import GenerationRequest, Generated
from mllm_guidance.backends.grounding import fit_size, grounding_inputs
from mllm_guidance.backends.torch_device import seeded_generator

DEFAULT_MODEL = "masterful/gligen-1-4-generation-text-box"


class GligenGenerator:
    name = "gligen"
    default_size = (512, 512)

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str | None = None, dtype: str | None = None,
                 cpu_offload: bool = False, attention_slicing: bool = False, beta: float = 0.3,
                 steps: int = 50, guidance_scale: float = 7.5, safety_checker: bool = True) -> None:
        def load(torch_dtype: Any) -> Any:
            from diffusers import StableDiffusionGLIGENPipeline

            extra = {} if safety_checker else {"safety_checker": None, "requires_safety_checker": False}
            return StableDiffusionGLIGENPipeline.from_pretrained(model, torch_dtype=torch_dtype, **extra)

        self.model, self.beta, self.steps, self.guidance_scale = model, beta, steps, guidance_scale
        self.pipe, self.device, self.dtype = load_pipeline(
            "gligen", model, load, device=device, dtype=dtype, cpu_offload=cpu_offload, attention_slicing=attention_slicing
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
