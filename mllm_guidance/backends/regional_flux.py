"""``regional-flux``: training-free regional prompting on FLUX, with this project's own pipeline.

Models: ``black-forest-labs/FLUX.1-schnell`` (default: weights under Apache-2.0) and
``black-forest-labs/FLUX.1-dev`` (FLUX.1 [dev] Non-Commercial License, gated: accept it on the model
page and set ``HF_TOKEN``); any local ``FluxPipeline.save_pretrained`` folder works too. Native box
format: normalized corners ``[x1, y1, x2, y2]``, the project's own; each box's phrase becomes a
region of tokens (a 16 x 16-pixel cell of the image is one token).

The recipe is Chen et al., "Training-free Regional Prompting for Diffusion Transformers" (2024;
instantX-research/Regional-Prompting-FLUX, read at commit 60111799): region phrases attend only to
their boxes' image tokens (and those only to them) for the first denoising steps, mixed with an
unmasked pass over the whole prompt, then the mask is released (``dit/regional_flux_pipeline.py``
says how). Defaults taken from the authors, as their README's quick start and
``infer_flux_regional.py`` set them: mask for 10 of 24 steps (here a share, 10/24, of whatever the
step count is), the mask in every double- and single-stream block (intervals 1 and 1), base ratio 0.2,
background prompt "a photo" for the pixels no box covers; for FLUX.1-dev 24 steps and guidance 3.5.
For FLUX.1-schnell (no guidance embedding, so no guidance): 4 steps and 256 T5 tokens, Black Forest
Labs' published settings for it (the authors only used dev, always with 512 tokens). Default size
1024 x 1024; sizes are rounded down to multiples of 16.

Published figures, all the authors' (FLUX.1-dev, GPU and resolution not stated): plain FLUX.1-dev
18 s and 34 GB; with regional prompting 23 s / 41 GB for 2 regions, 36 s / 41 GB for 4, 46 s / 41 GB
for 8, 63 s / 42 GB for 16. Up to 16 boxes (the most they measured) are kept, the largest first;
each region adds one phrase's tokens (256 or 512) to the attention. ``--cpu-offload`` moves idle
components to the CPU for smaller GPUs.

What changes from the authors' code, on purpose: a pixel inside two boxes belongs to both (their
background mask turns overlaps into background too), the background region is added whenever any
token is outside every box, and a box smaller than one token keeps the token under its centre. The
option ``overlap="authors"`` reproduces their masks instead (all three differences). CI checks both
against golden latents recorded from the authors' code on a tiny random FLUX.1-dev-like model
(``scripts/record_goldens.py``, ``tests/backends/test_goldens.py``): boxes apart, either option, and
overlapping boxes with ``authors`` agree to 4.8e-7 (fp32; their diffusers 0.31 against the one pinned
here); overlapping boxes with the fix differ from theirs by 1.4e-3, as they should.

Batches (``generate_batch``): the pipeline takes one region list per prompt, so requests that share
size, steps, guidance and whether they are grounded render in one call, each equal to its lone render
to float rounding.

Repair (``supports_repair``): a request with ``repair`` set repaints only its mask through the
pipeline's ``repair_image`` / ``repair_boxes`` (flow-matching blended latents on the token grid,
``backends.latent_blend.FlowBlend``); candidate repairs of one image inside one mask share a batch.
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.backends.diffusers_base import GroupRenderer, load_pipeline, render_regions
from mllm_guidance.backends.generator import Generated, GenerationRequest
from mllm_guidance.backends.grounding import fit_size, grounding_inputs
from mllm_guidance.errors import BackendError

DEFAULT_MODEL = "black-forest-labs/FLUX.1-schnell"
#: The authors' mask span: 10 of 24 steps.
MASK_SHARE = 10 / 24
MAX_REGIONS = 16


def flux_license(model: str) -> str:
    """The license of well-known FLUX.1 weights by name; anything else is the user's to check."""
    name = model.lower()
    if "flux.1-schnell" in name:
        return "FLUX.1 [schnell]: Apache-2.0"
    if "flux.1-dev" in name:
        return "FLUX.1 [dev] Non-Commercial License"
    return f"unknown: see the license of {model}"


class RegionalFluxGenerator(GroupRenderer):
    name = "regional-flux"
    default_size = (1024, 1024)
    supports_repair = True
    shares = {"negative": "text", "grounding": True}

    def __init__(self, model: str = DEFAULT_MODEL, *, device: str | None = None, dtype: str | None = None,
                 cpu_offload: bool = False, attention_slicing: bool = False, scheduler: str | None = None,
                 compile: bool | str = False, vae_tiling: bool = False, steps: int | None = None,
                 guidance_scale: float = 3.5, mask_share: float = MASK_SHARE, base_ratio: float = 0.2,
                 double_interval: int = 1, single_interval: int = 1, background_prompt: str = "a photo",
                 max_regions: int = MAX_REGIONS, max_sequence_length: int | None = None, overlap: str = "union") -> None:
        if overlap not in ("union", "authors"):
            raise BackendError(f"regional-flux: overlap must be 'union' (the fix) or 'authors', got {overlap!r}")
        def load(torch_dtype: Any) -> Any:
            from mllm_guidance.backends.layout_pipelines.regional_flux_pipeline import RegionalFluxPipeline

            return RegionalFluxPipeline.from_pretrained(model, torch_dtype=torch_dtype)

        self.model = model
        self.pipe, self.device, self.dtype = load_pipeline("regional-flux", model, load, device=device, dtype=dtype,
                                                           cpu_offload=cpu_offload, attention_slicing=False,
                                                           scheduler=scheduler, compile=compile, vae_tiling=vae_tiling)
        distilled = bool(self.pipe.transformer.config.guidance_embeds)  # dev-like; schnell has no guidance input
        self.steps = steps or (24 if distilled else 4)
        self.guidance_scale = guidance_scale
        self.max_sequence_length = max_sequence_length or (512 if distilled else 256)
        self.mask_share, self.base_ratio = mask_share, base_ratio
        self.double_interval, self.single_interval = double_interval, single_interval
        self.background_prompt, self.max_regions, self.overlap = background_prompt, max_regions, overlap
        self.weights_license = flux_license(model)
        self.attention_slicing_ignored = attention_slicing

    def _render_group(self, requests: list[GenerationRequest]) -> list[Generated]:
        first = requests[0]
        width, height, size_notes = fit_size(first.width, first.height, 16)
        inputs = [grounding_inputs(r.layout, [self.pipe.tokenizer_2], max_objects=self.max_regions,
                                   token_limit=self.max_sequence_length, specials=1) for r in requests]
        after: list[str] = []
        if first.negative_prompt:
            after.append("regional-flux ignores the negative prompt (FLUX is guidance-distilled)")
        if self.attention_slicing_ignored:
            after.append("attention slicing does not apply to FLUX; use --cpu-offload to save memory")
        steps = first.steps or self.steps
        return render_regions(
            self.name, self.pipe, requests, inputs, size_notes, after, height=height, width=width,
            num_inference_steps=steps,
            guidance_scale=first.guidance_scale if first.guidance_scale is not None else self.guidance_scale,
            max_sequence_length=self.max_sequence_length, mask_inject_steps=round(self.mask_share * steps),
            base_ratio=self.base_ratio, double_inject_interval=self.double_interval,
            single_inject_interval=self.single_interval, background_prompt=self.background_prompt, overlap=self.overlap,
        )
