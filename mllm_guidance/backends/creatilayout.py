"""``creatilayout``: CreatiLayout's SiamLayout (Zhang et al., ICCV 2025) on SD3 or FLUX.1-dev, with
this project's own transformer blocks and pipelines (``dit/siamlayout_sd3.py``, ``dit/siamlayout_flux.py``;
no ``trust_remote_code``, none of the authors' code).

Models: ``--model-path`` names the base pipeline and picks the family by its ``model_index.json``:
``stabilityai/stable-diffusion-3-medium-diffusers`` (default; SD3-medium, gated: accept its license
on the model page and set ``HF_TOKEN``) or ``black-forest-labs/FLUX.1-dev`` (gated likewise). The
layout-trained transformer comes from ``HuiZhang0812/CreatiLayout``, folder ``SiamLayout_SD3`` or
``SiamLayout_FLUX`` (option ``layout_weights``), unless the base folder's own ``transformer/`` already
is a SiamLayout one (a pipeline this project saved). CreatiLayout also publishes ``SiamLayout_SD3_lora``;
it is not supported here, nor SD3.5: no SiamLayout weights exist for it.

License of the weights: each SiamLayout transformer is a fine-tuned copy of its base, so the base's
license applies: SD3-medium's Stability AI Community License, FLUX.1-dev's FLUX.1 [dev] Non-Commercial
License. The CreatiLayout repository (read at commit 860d8bd) carries no license file of its own.

Native box format: normalized corners ``[x1, y1, x2, y2]`` with a phrase each, the project's own; at
most 10 boxes (the trained slot count; the largest are kept). Phrases: SD3 embeds each with both CLIP
encoders (cut to 77 tokens); FLUX takes each phrase's first 30 T5 tokens. Defaults are the authors':
SD3 1024 x 1024, 50 steps, guidance 7.5 (``test_sample.py``); FLUX 512 x 512, 50 steps, guidance
embedding 3.5 plus true classifier-free guidance 3.0 against an empty negative prompt (the pipeline's
defaults and the LayoutSAM benchmark script); the layout branch runs for the first 30% of the steps.
Sizes are rounded down to multiples of 16.

The authors publish no inference memory or speed figures (README and code at 860d8bd); note that the
FLUX variant runs two transformer passes a step (true guidance) plus the layout branch, and that
``--cpu-offload`` moves idle components to the CPU for smaller GPUs.

Checked against the authors' pipelines on tiny random models (fp32, CPU, same components, seed and
boxes): final latents agree to about 1e-6 on SD3 and FLUX, which is what plain SD3 and FLUX differ by
between the diffusers the authors used and the one pinned here; transformers saved by the authors'
classes load into these with no missing or unexpected parameters. CI keeps the SD3 check: golden
latents of the authors' pipeline at 860d8bd, run in this project's environment, which the project's
pipeline matches bit for bit (``scripts/record_goldens.py``, ``tests/backends/test_goldens.py``).

Batches (``generate_batch``): the pipelines take one box list per prompt, so requests that share
size, steps, guidance, negative prompt and whether they are grounded render in one call, each equal
to its lone render to float rounding.
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.backends.diffusers_base import GroupRenderer, load_pipeline, read_model_json, render_regions
from mllm_guidance.backends.generator import Generated, GenerationRequest
from mllm_guidance.backends.grounding import fit_size, grounding_inputs

DEFAULT_MODEL = "stabilityai/stable-diffusion-3-medium-diffusers"
LAYOUT_WEIGHTS = "HuiZhang0812/CreatiLayout"
SUBFOLDER = {"sd3": "SiamLayout_SD3", "flux": "SiamLayout_FLUX"}
#: The authors' settings per family: size, steps, guidance.
DEFAULTS = {"sd3": ((1024, 1024), 50, 7.5), "flux": ((512, 512), 50, 3.5)}
MAX_BOXES = 10


def family_of(model: str) -> str:
    """``sd3`` or ``flux``, from the pipeline class its ``model_index.json`` names."""
    name = str(read_model_json(model, "model_index.json").get("_class_name", ""))
    if "Flux" in name:
        return "flux"
    if "StableDiffusion3" in name or "SD3" in name:
        return "sd3"
    raise ValueError(f"{model} is a {name or 'unknown'} pipeline; creatilayout needs an SD3 or a FLUX.1-dev pipeline")


def load_creatilayout(model: str, layout_weights: str = LAYOUT_WEIGHTS, torch_dtype: Any = None) -> Any:
    """The project's CreatiLayout pipeline for a base pipeline folder or hub id."""
    family = family_of(model)
    own = read_model_json(model, "transformer/config.json").get("attention_type") == "layout"
    source, subfolder = (model, "transformer") if own else (layout_weights, SUBFOLDER[family])
    if family == "sd3":
        from mllm_guidance.backends.layout_pipelines.siamlayout_sd3 import CreatiLayoutSD3Pipeline, SiamLayoutSD3Transformer2DModel

        transformer = SiamLayoutSD3Transformer2DModel.from_pretrained(source, subfolder=subfolder, torch_dtype=torch_dtype)
        return CreatiLayoutSD3Pipeline.from_pretrained(model, transformer=transformer, torch_dtype=torch_dtype)
    from mllm_guidance.backends.layout_pipelines.siamlayout_flux import (
        CreatiLayoutFluxPipeline,
        SiamLayoutFluxTransformer2DModel,
        load_transformer,
    )

    if own:  # saved by this project: its config says which blocks are grounded
        transformer = SiamLayoutFluxTransformer2DModel.from_pretrained(source, subfolder=subfolder, torch_dtype=torch_dtype)
    else:
        transformer = load_transformer(source, subfolder, torch_dtype)
    return CreatiLayoutFluxPipeline.from_pretrained(model, transformer=transformer, torch_dtype=torch_dtype)


def creatilayout_license(model: str, family: str) -> str:
    name = model.lower()
    if family == "sd3" and "stable-diffusion-3-medium" in name:
        return "Stability AI Community License (SD3-medium, fine-tuned by CreatiLayout)"
    if family == "flux" and "flux.1-dev" in name:
        return "FLUX.1 [dev] Non-Commercial License (FLUX.1-dev, fine-tuned by CreatiLayout)"
    return f"unknown: see the license of {model}"


class CreatiLayoutGenerator(GroupRenderer):
    name = "creatilayout"
    #: repairs through the pipelines' ``repair_image`` / ``repair_boxes`` (flow-matching blended latents)
    supports_repair = True
    shares = {"negative": "text", "grounding": True}

    def __init__(self, model: str = DEFAULT_MODEL, *, layout_weights: str = LAYOUT_WEIGHTS, device: str | None = None,
                 dtype: str | None = None, cpu_offload: bool = False, attention_slicing: bool = False,
                 scheduler: str | None = None, compile: bool | str = False, vae_tiling: bool = False,
                 steps: int | None = None, guidance_scale: float | None = None, true_cfg_scale: float = 3.0,
                 grounding_share: float = 0.3, max_sequence_length: int | None = None) -> None:
        self.model = model
        self.pipe, self.device, self.dtype = load_pipeline(
            "creatilayout", model, lambda td: load_creatilayout(model, layout_weights, td), device=device, dtype=dtype,
            cpu_offload=cpu_offload, attention_slicing=False, scheduler=scheduler, compile=compile,
            vae_tiling=vae_tiling,
        )
        self.family = "flux" if hasattr(self.pipe.transformer, "single_transformer_blocks") else "sd3"
        size, default_steps, default_guidance = DEFAULTS[self.family]
        self.default_size = size
        self.steps = steps or default_steps
        self.guidance_scale = guidance_scale if guidance_scale is not None else default_guidance
        self.true_cfg_scale, self.grounding_share = true_cfg_scale, grounding_share
        self.max_sequence_length = max_sequence_length or (512 if self.family == "flux" else 256)  # the pipelines' own
        self.weights_license = creatilayout_license(model, self.family)
        self.attention_slicing_ignored = attention_slicing

    def _render_group(self, requests: list[GenerationRequest]) -> list[Generated]:
        first = requests[0]
        width, height, size_notes = fit_size(first.width, first.height, 16)
        if self.family == "sd3":
            tokenizers, limit, specials = [self.pipe.tokenizer, self.pipe.tokenizer_2], None, 2
        else:
            tokenizers, limit, specials = [self.pipe.tokenizer_2], self.pipe.transformer.config.max_boxes_token_length, 1
        inputs = [grounding_inputs(r.layout, tokenizers, max_objects=MAX_BOXES, token_limit=limit, specials=specials)
                  for r in requests]
        after: list[str] = []
        if self.attention_slicing_ignored:
            after.append("attention slicing does not apply to these transformers; use --cpu-offload to save memory")
        kwargs: dict[str, Any] = dict(
            height=height, width=width, num_inference_steps=first.steps or self.steps,
            guidance_scale=first.guidance_scale if first.guidance_scale is not None else self.guidance_scale,
            grounding_share=self.grounding_share,
            max_sequence_length=self.max_sequence_length,
        )
        if inputs[0][0] and int(kwargs["grounding_share"] * kwargs["num_inference_steps"]) == 0:
            after.append(f"{kwargs['num_inference_steps']} steps: the layout branch, on for the first "
                         f"{kwargs['grounding_share']:.0%} of them (rounded down), never runs")
        if self.family == "flux":
            kwargs.update(true_cfg_scale=self.true_cfg_scale, negative_prompt=first.negative_prompt or "")
        elif first.negative_prompt:
            kwargs["negative_prompt"] = first.negative_prompt
        return render_regions(self.name, self.pipe, requests, inputs, size_notes, after, **kwargs)
