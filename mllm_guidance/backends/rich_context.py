"""``rich-context``: Rich-context Layout-to-Image (Cheng et al., NeurIPS 2024) through its official code.

Install: ``git clone https://github.com/cplusx/rich_context_L2I``, its ``requirements.txt``, the
checkpoint ``rich_context_sdxl_e580.pt`` (Hugging Face ``cplusx/rich_context_sdxl``) in the clone,
and the initial regional-attention UNet weights (``python misc_utils/init_regional_unet.py
--model_path hotshotco/SDXL-512 --save_path regional_attn_sdxl_512_init_weights --model_type ca``);
then set ``RICH_CONTEXT_L2I_REPO`` to the clone (or pass ``repo=``). The adapter imports the
repository's ``inference_on_dataset`` module in this process, builds the pipeline once with their
``get_pipe`` and ``load_ckpt``, and calls it for every image, as their ``inference.ipynb`` does.

Native input: ``boxes`` as a numpy array of pixel corners ``[x1, y1, x2, y2]`` on a 512 x 512
canvas and one rich description per box in ``labels``. Defaults as in their notebook: 50 steps,
guidance 5.0, scheduled-sampling beta 1, their negative prompts. SDXL-based; their code runs on
CUDA in fp16.
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.backends.generator import GenerationRequest, Generated
from mllm_guidance.backends.research_code import ResearchCode
from mllm_guidance.backends.torch_device import seeded_generator
from mllm_guidance.layout import Box, Layout

REPO_URL = "https://github.com/cplusx/rich_context_L2I"
SETUP = ("pip install -r requirements.txt in the clone, download rich_context_sdxl_e580.pt into it and run "
         "misc_utils/init_regional_unet.py as its README says")
CANVAS = 512


def to_rich_context_box(box: Box, size: int = CANVAS) -> list[int]:
    """Normalized corners -> Rich-context's pixel corners on its square canvas."""
    return box.to_pixels(size, size)


def from_rich_context_box(values: list[float], size: int = CANVAS) -> Box:
    return Box.from_pixels(values, size, size)


def rich_context_input(prompt: str, layout: Layout | None) -> tuple[Any, list[str], list[str]]:
    """(boxes as a numpy array, labels, notes); an empty layout becomes one whole-image box."""
    import numpy as np

    notes = []
    objects = list(layout.objects) if layout is not None else []
    if not objects:
        objects = Layout.from_pairs([(prompt, [0.0, 0.0, 1.0, 1.0])]).objects
        notes.append("empty layout: one whole-image box with the prompt")
    boxes = np.array([to_rich_context_box(o.box) for o in objects])
    return boxes, [o.name for o in objects], notes


class RichContextGenerator:
    name = "rich-context"
    default_size = (CANVAS, CANVAS)

    def __init__(self, model: str = "rich_context_sdxl_e580.pt", *, repo: str | None = None,
                 config: str = "configs/layout_sdxl.yaml", version: str = "sdxl", beta: float = 1.0,
                 steps: int = 50, guidance_scale: float = 5.0) -> None:
        self.code = ResearchCode("Rich-context L2I", repo, "RICH_CONTEXT_L2I_REPO", REPO_URL, SETUP)
        ckpt = self.code.checkpoint(model)
        module = self.code.module("inference_on_dataset")
        omegaconf = self.code.module("omegaconf")
        self.beta, self.steps, self.guidance_scale = beta, steps, guidance_scale
        self.negative = getattr(module, "NEGATIVE_PROMPTS", None)
        with self.code.inside():
            self.pipe, _, _ = module.get_pipe(version, omegaconf.OmegaConf.load(config))
            module.load_ckpt(ckpt, self.pipe)

    def generate(self, request: GenerationRequest) -> Generated:
        boxes, labels, notes = rich_context_input(request.prompt, request.layout)
        if (request.width, request.height) != (CANVAS, CANVAS):
            notes.append(f"Rich-context L2I renders on its {CANVAS}x{CANVAS} canvas")
        with self.code.inside():
            generated = self.pipe(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt if request.negative_prompt is not None else self.negative,
                height=CANVAS, width=CANVAS, boxes=boxes, labels=labels,
                scheduled_sampling_beta=self.beta,
                num_inference_steps=request.steps or self.steps,
                guidance_scale=request.guidance_scale if request.guidance_scale is not None else self.guidance_scale,
                generator=seeded_generator(request.seed),
            )
        image = generated[0][0]
        return Generated(image=image.convert("RGB"), notes=notes)
