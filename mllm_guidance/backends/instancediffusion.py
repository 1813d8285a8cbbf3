"""``instancediffusion``: InstanceDiffusion (Wang et al., CVPR 2024) through its official code.

Install: ``git clone https://github.com/frank-xwang/InstanceDiffusion``, its ``requirements.txt``,
and the checkpoint ``instancediffusion_sd15.pth`` (from the repository's README, Hugging Face
``xudongw/InstanceDiffusion``) into ``pretrained/``; then set ``INSTANCEDIFFUSION_REPO`` to the clone
(or pass ``repo=``). The adapter imports the repository's ``inference`` module in this process,
loads the model once, and calls the repository's own ``run`` for every image.

Native input: a JSON document ``{"caption", "width", "height", "annos": [{"bbox": [x, y, w, h]
in pixels, "mask": [], "category_name": "", "caption": per-instance description}]}`` on a 512 x 512
canvas; ``instancediffusion_input`` builds it exactly, and the conversion to the normalized corners
their ``run`` consumes is theirs (``rescale_box``). Defaults as in their ``inference.py``: 50 PLMS
steps, guidance 7.5, alpha 0.75 (share of steps with grounding), MIS 0.36, no SDXL refiner. Base
model SD 1.5 at 512 x 512; their code runs on CUDA (it samples under CUDA autocast).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mllm_guidance.backends.generator import GenerationRequest, Generated
from mllm_guidance.backends.research_code import ResearchCode
from mllm_guidance.layout import Box, Layout

REPO_URL = "https://github.com/frank-xwang/InstanceDiffusion"
SETUP = "pip install -r requirements.txt in the clone, and put instancediffusion_sd15.pth in its pretrained/ folder"
CANVAS = 512
NEGATIVE = ("longbody, lowres, bad anatomy, bad hands, missing fingers, extra digit, fewer digits, cropped, "
            "worst quality, low quality")


def to_instance_box(box: Box, width: int = CANVAS, height: int = CANVAS) -> list[int]:
    """Normalized corners -> InstanceDiffusion's pixel ``[x, y, w, h]``."""
    x1, y1, x2, y2 = box.to_pixels(width, height)
    return [x1, y1, x2 - x1, y2 - y1]


def from_instance_box(values: list[float], width: int = CANVAS, height: int = CANVAS) -> Box:
    """InstanceDiffusion's pixel ``[x, y, w, h]`` -> normalized corners."""
    x, y, w, h = values
    return Box.from_pixels([x, y, x + w, y + h], width, height)


def instancediffusion_input(prompt: str, layout: Layout | None) -> tuple[dict[str, Any], list[str]]:
    """Their JSON input; an empty layout becomes one whole-image instance described by the prompt."""
    notes = []
    objects = list(layout.objects) if layout is not None else []
    if not objects:
        objects = Layout.from_pairs([(prompt, [0.0, 0.0, 1.0, 1.0])]).objects
        notes.append("empty layout: one whole-image instance with the prompt")
    annos = [{"bbox": to_instance_box(o.box), "mask": [], "category_name": "", "caption": o.name} for o in objects]
    return {"caption": prompt, "width": CANVAS, "height": CANVAS, "annos": annos}, notes


class InstanceDiffusionGenerator:
    name = "instancediffusion"
    default_size = (CANVAS, CANVAS)

    def __init__(self, model: str = "pretrained/instancediffusion_sd15.pth", *, repo: str | None = None,
                 test_config: str = "configs/test_box.yaml", alpha: float = 0.75, mis: float = 0.36,
                 guidance_scale: float = 7.5, negative_prompt: str = NEGATIVE, device: str = "cuda") -> None:
        self.code = ResearchCode("InstanceDiffusion", repo, "INSTANCEDIFFUSION_REPO", REPO_URL, SETUP)
        ckpt = self.code.checkpoint(model)
        self.inference = self.code.module("inference")
        self.alpha, self.device = alpha, device
        self.args = SimpleNamespace(output="", num_images=1, guidance_scale=guidance_scale, negative_prompt=negative_prompt,
                                    input_json="", ckpt=ckpt, seed=0, alpha=alpha, mis=mis, cascade_strength=0.0,
                                    test_config=test_config)
        self.inference.args = self.args  # their run() reads the module-level args
        with self.code.inside():
            self.model, self.autoencoder, self.text_encoder, self.diffusion, self.config = \
                self.inference.load_model_ckpt(ckpt, self.args, device)
            self.clip_model, self.clip_processor = self.inference.create_clip_pretrain_model()
            self.grounding = self.inference.instantiate_from_config(self.config["grounding_tokenizer_input"])
        self.model.grounding_tokenizer_input = self.grounding

    def meta(self, spec: dict[str, Any], save_folder: str) -> dict[str, Any]:
        """The ``meta`` their ``inference.py`` builds from a JSON input without masks, via their helpers."""
        import numpy as np

        inf = self.inference
        w, h = spec["width"], spec["height"]
        locations = [inf.rescale_box(a["bbox"], w, h) for a in spec["annos"]]
        masks = [np.zeros((CANVAS, CANVAS, 1)) for _ in locations]
        info = {"width": w, "height": h}
        scribbles = [inf.convert_points(inf.sample_random_points_from_mask(m, 20), info) for m in masks]
        polygons = []
        for m in masks:
            points = inf.sample_sparse_points_from_mask(m, k=256)
            polygons.append(inf.convert_points(points if points is not None else [0] * 512, info))
        segs = np.stack([inf.resize(m.astype(np.float32), (CANVAS, CANVAS, 1)) for m in masks]).astype(np.float32).squeeze()
        return dict(ckpt=self.args.ckpt, prompt=spec["caption"], phrases=[a["caption"] for a in spec["annos"]],
                    polygons=polygons, scribbles=scribbles, segs=segs, locations=locations,
                    points=[inf.get_point_from_box(loc) for loc in locations],
                    alpha_type=[self.alpha, 0.0, 1 - self.alpha], save_folder_name=save_folder)

    def generate(self, request: GenerationRequest) -> Generated:
        import torch
        from PIL import Image

        spec, notes = instancediffusion_input(request.prompt, request.layout)
        if (request.width, request.height) != (CANVAS, CANVAS):
            notes.append(f"InstanceDiffusion renders on its {CANVAS}x{CANVAS} canvas")
        if request.negative_prompt is not None:
            self.args.negative_prompt = request.negative_prompt
        guidance = request.guidance_scale if request.guidance_scale is not None else self.args.guidance_scale
        noise = torch.randn(1, 4, CANVAS // 8, CANVAS // 8, generator=torch.Generator().manual_seed(request.seed)).to(self.device)
        with tempfile.TemporaryDirectory() as out, self.code.inside():
            self.args.output = out
            self.inference.args = self.args
            meta = self.meta(spec, f"seed{request.seed}")
            self.inference.run(meta, self.model, self.autoencoder, self.text_encoder, self.diffusion, self.clip_model,
                               self.clip_processor, self.config, self.grounding, noise, guidance_scale=guidance)
            image = Image.open(Path(out) / meta["save_folder_name"] / "0.png")
            image.load()
        return Generated(image=image.convert("RGB"), notes=notes)
