"""MLLM Guidance as ComfyUI nodes: plan a layout, judge an image, align a layout, or run the whole
loop, inside the ComfyUI you already use.

Install: put this folder into ``ComfyUI/custom_nodes`` (a copy or a link) and install the package into
ComfyUI's Python (``pip install 'mllm-guidance[openai]'``, or the extra of your MLLM provider). The MLLM
is named by the same spec string as everywhere else (``openai:gpt-4o``, ``google_genai:gemini-2.5-flash``,
``ollama:gemma3:27b``, ``replay:run.json``); its key comes from the environment ComfyUI runs in.

* **MLLM plan layout**: prompt -> boxes, applied to the conditioning with ComfyUI's own
  ``GLIGENTextBoxApply`` (one per object, boxes in pixels, steps of 8); also the layout as JSON
  (``[[description, [x1, y1, x2, y2]], ...]``, normalized corners, origin top-left).
* **MLLM judge**: image + prompt -> score (1-5) and the reasoning (the loop's reason step).
* **MLLM align**: image + prompt + layout JSON -> the new layout JSON and the reasoning.
* **MLLM guide**: the whole loop (plan, render, judge, align, render again ...) rendered here, in this
  process, by ComfyUI's own nodes (text encoding, GLIGEN boxes, ``KSampler``, VAE decode) on the
  model, CLIP, VAE and GLIGEN you connect: the best image, its layout and its score. It does not queue
  prompts on its own server (that queue is busy running this node).

Every node writes its MLLM calls to a run directory under ComfyUI's output folder (``mllm-guidance/``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CATEGORY = "MLLM Guidance"
MLLM_DEFAULT = "openai:gpt-4o"


def _run_dir(kind: str) -> Path:
    import uuid

    import folder_paths  # ComfyUI's

    return Path(folder_paths.get_output_directory()) / "mllm-guidance" / f"{kind}-{uuid.uuid4().hex[:8]}"


def _pil(images: Any) -> Any:
    """ComfyUI's IMAGE (a float tensor B x H x W x C in [0, 1]) -> the first image as PIL."""
    import numpy as np
    from PIL import Image

    array = (images[0].detach().cpu().numpy().clip(0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def _tensor(image: Any) -> Any:
    import numpy as np
    import torch

    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)[None]


def _layout_json(layout: Any) -> str:
    return json.dumps([[o.name, o.box.as_list()] for o in (layout.objects if layout is not None else [])])


def _layout(text: str) -> Any:
    from mllm_guidance.layout import Layout

    text = (text or "").strip()
    if not text:
        return None
    try:
        return Layout.from_pairs([(str(name), list(box)) for name, box in json.loads(text)])
    except (ValueError, TypeError) as exc:
        raise ValueError(f"layout_json must be [[description, [x1, y1, x2, y2]], ...] with normalized corners ({exc})") from None


def apply_boxes(conditioning: Any, clip: Any, gligen: Any, layout: Any, width: int, height: int) -> Any:
    """``conditioning`` with one ComfyUI ``GLIGENTextBoxApply`` per object of ``layout``."""
    import nodes  # ComfyUI's

    from mllm_guidance.backends.comfyui import gligen_box

    apply = nodes.GLIGENTextBoxApply()
    for obj in layout.objects if layout is not None else []:
        box = gligen_box(obj.box.as_list(), width, height)
        (conditioning,) = apply.append(conditioning, clip, gligen, obj.name, box["width"], box["height"], box["x"], box["y"])
    return conditioning


class MLLMPlanLayout:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802
        return {"required": {
            "conditioning": ("CONDITIONING",), "clip": ("CLIP",), "gligen_textbox_model": ("GLIGEN",),
            "prompt": ("STRING", {"multiline": True}), "mllm": ("STRING", {"default": MLLM_DEFAULT}),
            "width": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8}),
            "height": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8}),
            "correct_rounds": ("INT", {"default": 0, "min": 0, "max": 5}),
        }}

    RETURN_TYPES = ("CONDITIONING", "STRING")
    RETURN_NAMES = ("conditioning", "layout_json")
    FUNCTION = "plan"
    CATEGORY = CATEGORY

    def plan(self, conditioning: Any, clip: Any, gligen_textbox_model: Any, prompt: str, mllm: str, width: int,
             height: int, correct_rounds: int) -> tuple[Any, str]:
        from mllm_guidance.api import plan

        result = plan(prompt, mllm, correct_rounds=correct_rounds, run_dir=_run_dir("plan"))
        return apply_boxes(conditioning, clip, gligen_textbox_model, result.layout, width, height), _layout_json(result.layout)


class MLLMJudge:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802
        return {"required": {"image": ("IMAGE",), "prompt": ("STRING", {"multiline": True}),
                             "mllm": ("STRING", {"default": MLLM_DEFAULT})}}

    RETURN_TYPES = ("INT", "STRING")
    RETURN_NAMES = ("score", "reasoning")
    FUNCTION = "judge"
    CATEGORY = CATEGORY

    def judge(self, image: Any, prompt: str, mllm: str) -> tuple[int, str]:
        from mllm_guidance.one_step import judge

        verdict = judge(prompt, _pil(image), mllm, run_dir=_run_dir("judge"))
        if verdict.score is None:
            raise ValueError(f"the MLLM gave no readable score: {verdict.error}")
        return verdict.score, verdict.reasoning


class MLLMAlign:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802
        return {"required": {"image": ("IMAGE",), "prompt": ("STRING", {"multiline": True}),
                             "layout_json": ("STRING", {"multiline": True, "default": ""}),
                             "mllm": ("STRING", {"default": MLLM_DEFAULT})}}

    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("layout_json", "reasoning")
    FUNCTION = "align"
    CATEGORY = CATEGORY

    def align(self, image: Any, prompt: str, layout_json: str, mllm: str) -> tuple[str, str]:
        from mllm_guidance.one_step import align

        proposal = align(prompt, _pil(image), _layout(layout_json), mllm, run_dir=_run_dir("align"))
        if proposal.layout is None:
            raise ValueError(f"the MLLM gave no readable layout: {proposal.error}")
        return _layout_json(proposal.layout), proposal.reasoning


class InProcessComfyGenerator:
    """A generator that renders with ComfyUI's own nodes in this process, on connected models."""

    name = "comfyui-in-process"
    default_size = (512, 512)

    def __init__(self, model: Any, clip: Any, vae: Any, gligen: Any, *, steps: int, cfg: float, sampler_name: str,
                 scheduler: str) -> None:
        self.model, self.clip, self.vae, self.gligen = model, clip, vae, gligen
        self.steps, self.cfg, self.sampler_name, self.scheduler = steps, cfg, sampler_name, scheduler

    def generate(self, request: Any) -> Any:
        import torch

        with torch.inference_mode():  # as ComfyUI runs nodes; the loop calls this from a worker thread
            return self._generate(request)

    def _generate(self, request: Any) -> Any:
        import nodes  # ComfyUI's

        from mllm_guidance.backends.generator import Generated
        from mllm_guidance.backends.grounding import fit_size

        width, height, notes = fit_size(request.width, request.height, 8)
        (positive,) = nodes.CLIPTextEncode().encode(self.clip, request.prompt)
        (negative,) = nodes.CLIPTextEncode().encode(self.clip, request.negative_prompt or "")
        if request.layout is not None and not request.layout.is_empty:
            positive = apply_boxes(positive, self.clip, self.gligen, request.layout, width, height)
        (latent,) = nodes.EmptyLatentImage().generate(width, height, 1)
        (samples,) = nodes.common_ksampler(self.model, request.seed % 2**64, request.steps or self.steps,
                                           request.guidance_scale if request.guidance_scale is not None else self.cfg,
                                           self.sampler_name, self.scheduler, positive, negative, latent)
        (images,) = nodes.VAEDecode().decode(self.vae, samples)
        return Generated(image=_pil(images), notes=notes)


class MLLMGuide:
    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:  # noqa: N802
        import comfy.samplers  # ComfyUI's

        return {"required": {
            "model": ("MODEL",), "clip": ("CLIP",), "vae": ("VAE",), "gligen_textbox_model": ("GLIGEN",),
            "prompt": ("STRING", {"multiline": True}), "mllm": ("STRING", {"default": MLLM_DEFAULT}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
            "steps": ("INT", {"default": 25, "min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 100.0, "step": 0.1}),
            "sampler_name": (comfy.samplers.KSampler.SAMPLERS,), "scheduler": (comfy.samplers.KSampler.SCHEDULERS,),
            "width": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8}),
            "height": ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8}),
            "max_rounds": ("INT", {"default": 3, "min": 1, "max": 10}),
        }}

    RETURN_TYPES = ("IMAGE", "STRING", "INT")
    RETURN_NAMES = ("image", "layout_json", "score")
    FUNCTION = "guide"
    CATEGORY = CATEGORY

    def guide(self, model: Any, clip: Any, vae: Any, gligen_textbox_model: Any, prompt: str, mllm: str, seed: int,
              steps: int, cfg: float, sampler_name: str, scheduler: str, width: int, height: int,
              max_rounds: int) -> tuple[Any, str, int]:
        from mllm_guidance.api import guide

        generator = InProcessComfyGenerator(model, clip, vae, gligen_textbox_model, steps=steps, cfg=cfg,
                                            sampler_name=sampler_name, scheduler=scheduler)
        result = guide(prompt, mllm, generator, config={"width": width, "height": height, "seed": seed % 2**32,
                                                        "max_align_rounds": max_rounds - 1},
                       run_dir=_run_dir("guide"), checkpoint=False)
        return _tensor(result.load_image()), _layout_json(result.layout), int(result.score or 0)


NODE_CLASS_MAPPINGS = {"MLLMPlanLayout": MLLMPlanLayout, "MLLMJudge": MLLMJudge, "MLLMAlign": MLLMAlign,
                       "MLLMGuide": MLLMGuide}
NODE_DISPLAY_NAME_MAPPINGS = {"MLLMPlanLayout": "MLLM plan layout", "MLLMJudge": "MLLM judge",
                              "MLLMAlign": "MLLM align", "MLLMGuide": "MLLM guide"}
