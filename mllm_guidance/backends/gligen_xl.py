"""``gligen-xl``: GLIGEN on SDXL (the thesis's generator), with this project's own pipeline.

Checkpoint: ``jiuntian/gligen-xl-1024`` (IGLIGEN-XL by Jiun Tian Hoe et al., trained 500k steps at
512 and 100k at 1024 on SA-1B; 1024 x 1024; their examples use scheduled-sampling beta 0.4 and 50
steps; published training cost: 8 A100s for about 9 days). Native box format: normalized corners.
Default size 1024 x 1024, 50 steps, guidance 5.0, beta 0.4. The authors publish no inference memory
figures; as a rough guide, SDXL at 1024 x 1024 in fp16 needs about 10 GB of GPU memory without
offload (``--cpu-offload`` for smaller GPUs).

How the checkpoint is laid out, and how it is loaded here (no ``trust_remote_code``): the
repository is a diffusers pipeline folder whose ``unet/`` is an SDXL ``UNet2DConditionModel`` saved
with ``attention_type="gated"``, so that its ``position_net`` (``GLIGENTextBoundingboxProjection``,
positive_len = out_dim = 2048) and every transformer block's gated ``fuser`` carry the trained
adapter weights; ``vae/``, ``text_encoder/`` (CLIP-L), ``text_encoder_2/`` (OpenCLIP bigG with
projection), ``tokenizer/``, ``tokenizer_2/`` and ``scheduler/`` are SDXL's. ``load_gligen_xl``
reads each of those subfolders with its class and assembles ``StableDiffusionXLGLIGENPipeline``.
A phrase is embedded as CLIP-L's pooled output (768) concatenated with bigG's projected text
embedding (1280): 2048, SDXL's cross-attention width, as the authors trained it.

Proven against the authors' pipeline: IGLIGEN-XL's ``pipeline_gligen_sdxl.py`` (the remote code of
``jiuntian/gligen-xl-1024``; read in cgturhan/igligen-xl at commit f39d0f88, committed by its author)
gives bit-identical final latents on a tiny random SDXL GLIGEN model; CI checks it against a golden
(``scripts/record_goldens.py``, ``tests/backends/test_goldens.py``).

Batches (``generate_batch``): the pipeline takes a layout per prompt, so one call renders several
requests that share size, steps, guidance, whether they are grounded and whether they have a
negative prompt (SDXL zeroes an absent one); each image equals its lone render to float rounding.

Repair (``supports_repair``): a request with ``repair`` set passes the pipeline's ``repair_image`` and
``repair_boxes``, its blended-latent path (``backends.latent_blend``); candidate repairs of one image
inside one mask share a batch.
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.backends.diffusers_base import (GroupRenderer, first_image, load_pipeline, negative_prompts, quiet,
                                                   read_model_json, repair_inputs)
from mllm_guidance.backends.generator import Generated, GenerationRequest
from mllm_guidance.backends.grounding import fit_size, grounding_inputs
from mllm_guidance.backends.torch_device import seeded_generator
from mllm_guidance.errors import BackendError

DEFAULT_MODEL = "jiuntian/gligen-xl-1024"


def load_gligen_xl(path: str, torch_dtype: Any = None) -> Any:
    """Assemble the pipeline from a checkpoint folder's subfolders (local path or hub id)."""
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    kw = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kw)
    if unet.config.get("attention_type") != "gated" or getattr(unet, "position_net", None) is None:
        raise ValueError(f"{path}/unet is not a GLIGEN UNet (attention_type must be 'gated')")
    scheduler_config = read_model_json(path, "scheduler/scheduler_config.json")
    scheduler_cls = getattr(diffusers, scheduler_config.get("_class_name", "EulerDiscreteScheduler"))
    from mllm_guidance.backends.layout_pipelines.gligen_xl_pipeline import StableDiffusionXLGLIGENPipeline

    return StableDiffusionXLGLIGENPipeline(
        vae=AutoencoderKL.from_pretrained(path, subfolder="vae", **kw),
        text_encoder=CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **kw),
        text_encoder_2=CLIPTextModelWithProjection.from_pretrained(path, subfolder="text_encoder_2", **kw),
        tokenizer=CLIPTokenizer.from_pretrained(path, subfolder="tokenizer"),
        tokenizer_2=CLIPTokenizer.from_pretrained(path, subfolder="tokenizer_2"),
        unet=unet,
        scheduler=scheduler_cls.from_pretrained(path, subfolder="scheduler"),
    )


class GligenXLGenerator(GroupRenderer):
    name = "gligen-xl"
    default_size = (1024, 1024)
    supports_repair = True
    shares = {"grounding": True}

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str | None = None, dtype: str | None = None,
                 cpu_offload: bool = False, attention_slicing: bool = False, scheduler: str | None = None,
                 compile: bool | str = False, vae_tiling: bool = False, beta: float = 0.4,
                 steps: int = 50, guidance_scale: float = 5.0) -> None:
        self.model, self.beta, self.steps, self.guidance_scale = model, beta, steps, guidance_scale
        self.pipe, self.device, self.dtype = load_pipeline(
            "gligen-xl", model, lambda td: load_gligen_xl(model, td), device=device, dtype=dtype,
            cpu_offload=cpu_offload, attention_slicing=attention_slicing, scheduler=scheduler, compile=compile,
            vae_tiling=vae_tiling,
        )

    def generate(self, request: GenerationRequest) -> Generated:
        width, height, notes = fit_size(request.width, request.height)
        phrases, boxes, more = grounding_inputs(request.layout, [self.pipe.tokenizer, self.pipe.tokenizer_2])
        notes += more
        try:
            with quiet():
                image = first_image(self.pipe(
                    request.prompt, negative_prompt=request.negative_prompt, height=height, width=width,
                    num_inference_steps=request.steps or self.steps,
                    guidance_scale=request.guidance_scale if request.guidance_scale is not None else self.guidance_scale,
                    generator=seeded_generator(request.seed), gligen_phrases=phrases, gligen_boxes=boxes,
                    gligen_scheduled_sampling_beta=self.beta, **repair_inputs(request),
                ))
        except ValueError as exc:
            raise BackendError(f"gligen-xl could not render: {exc}") from exc
        return Generated(image=image, notes=notes)

    def _render_group(self, requests: list[GenerationRequest]) -> list[Generated]:
        if len(requests) == 1:
            return [self.generate(requests[0])]
        first = requests[0]
        width, height, size_notes = fit_size(first.width, first.height)
        inputs = [grounding_inputs(r.layout, [self.pipe.tokenizer, self.pipe.tokenizer_2]) for r in requests]
        try:
            with quiet():
                images = self.pipe(
                    [r.prompt for r in requests], negative_prompt=negative_prompts(requests), height=height, width=width,
                    num_inference_steps=first.steps or self.steps,
                    guidance_scale=first.guidance_scale if first.guidance_scale is not None else self.guidance_scale,
                    generator=[seeded_generator(r.seed) for r in requests], gligen_phrases=[p for p, _, _ in inputs],
                    gligen_boxes=[b for _, b, _ in inputs], gligen_scheduled_sampling_beta=self.beta,
                    **repair_inputs(first),
                ).images
        except ValueError as exc:
            raise BackendError(f"gligen-xl could not render: {exc}") from exc
        return [Generated(image=image, notes=size_notes + notes) for image, (_, _, notes) in zip(images, inputs, strict=True)]

