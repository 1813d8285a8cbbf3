"""``instancediffusion``: InstanceDiffusion (Wang et al., CVPR 2024) through its official code.

Install: ``git clone https://github.com/frank-xwang/InstanceDiffusion``, its ``requirements.txt``,
and the checkpoint ``instancediffusion_sd15.pth`` (from the repository's README, Hugging Face
``xudongw/InstanceDiffusion``) into ``pretrained/``; then set ``INSTANCEDIFFUSION_REPO`` to the clone
(or pass ``repo=``). Their code needs a CUDA GPU (it calls ``.cuda()`` and samples under CUDA
autocast): without one the adapter fails at load unless ``device`` is given.

The adapter runs their ``inference.py`` in a worker process started in the clone (see
``research_code``), loads the model once with their ``load_model_ckpt`` and calls their ``run`` for
every image, with what their script's ``__main__`` block would have set (read at commit 722900e):

- ``args`` (their argparse namespace) and ``return_att_masks = False`` exist only under
  ``__main__`` but ``get_model_inputs`` and ``run`` read them as module globals: the worker sets
  both (importing the module and calling ``run`` otherwise raises ``NameError``);
- the module-level ``device = "cuda"`` is their autocast ``device_type``: set to the device's type;
- ``from tkinter.messagebox import NO`` (in ``inference.py`` and ``dataset/decode_item.py``, unused):
  where tkinter is missing (servers without ``python3-tk``) the worker provides a stand-in module
  holding that one constant;
- relative paths: ``--test_config`` is loaded by an absolute path; the sampler reads
  ``pretrained/SD_v1_5_input_conv_weight_bias.pth`` relative to the working directory at every step
  without grounding, which is why their code runs in a process whose working directory is the clone;
- ``cascade_strength`` 0: the SDXL refiner (downloaded by ``run`` when above 0, not used for the
  paper's figures) is never fetched.

Native input: a JSON document ``{"caption", "width", "height", "annos": [{"bbox": [x, y, w, h]
in pixels, "mask": [], "category_name": "", "caption": per-instance description}]}`` on a 512 x 512
canvas; ``instancediffusion_input`` builds it exactly, and the conversion to the normalized corners
their ``run`` consumes is theirs (``rescale_box``). Defaults as in their ``inference.py``: 50 PLMS
steps, guidance 7.5, alpha 0.75 (share of steps with grounding), MIS 0.36. Image ``seed`` starts
from the noise their script draws after ``torch.manual_seed(seed)``. Base model SD 1.5 at 512 x 512.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from mllm_guidance.backends.generator import GenerationRequest, Generated
from mllm_guidance.backends.research_code import ResearchCode, ResearchWorker, import_research_module, research_device, use_checkout
from mllm_guidance.errors import BackendError
from mllm_guidance.layout import Box, Layout

WHAT = "InstanceDiffusion"
REPO_URL = "https://github.com/frank-xwang/InstanceDiffusion"
SETUP = "pip install -r requirements.txt in the clone, and put instancediffusion_sd15.pth in its pretrained/ folder"
FIRST_CONV = "pretrained/SD_v1_5_input_conv_weight_bias.pth"  # tracked in their repository, read by a relative path
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
                 guidance_scale: float = 7.5, negative_prompt: str = NEGATIVE, device: str | None = None,
                 python: str | None = None) -> None:
        code = ResearchCode(WHAT, repo, "INSTANCEDIFFUSION_REPO", REPO_URL, SETUP)
        ckpt = code.file(model)
        if code.root not in Path(ckpt).resolve().parents:
            raise BackendError(f"{WHAT}: the checkpoint {ckpt} is outside your checkout {code.root}; its released "
                               "checkpoint holds its training config and is loaded with pickle (weights_only=False), "
                               "which is done only for a file inside the checkout: put it in its pretrained/ folder")
        config = code.file(test_config, "test config", f"one of the configs/*.yaml of {REPO_URL}")
        code.file(FIRST_CONV, "file", "it ships with the repository: git checkout or re-clone it")
        self.device = research_device(device, WHAT, "their code calls .cuda() and samples under CUDA autocast")
        self.guidance_scale = guidance_scale
        self.worker = ResearchWorker(code, "mllm_guidance.backends.instancediffusion:InstanceDiffusionDriver", dict(
            root=str(code.root), ckpt=ckpt, test_config=config, device=self.device, alpha=alpha, mis=mis,
            guidance_scale=guidance_scale, negative_prompt=negative_prompt),
            python=python or os.environ.get("INSTANCEDIFFUSION_PYTHON"))

    def generate(self, request: GenerationRequest) -> Generated:
        from PIL import Image

        spec, notes = instancediffusion_input(request.prompt, request.layout)
        if (request.width, request.height) != (CANVAS, CANVAS):
            notes.append(f"InstanceDiffusion renders on its {CANVAS}x{CANVAS} canvas")
        guidance = request.guidance_scale if request.guidance_scale is not None else self.guidance_scale
        png = self.worker.call("generate", spec=spec, seed=request.seed, guidance_scale=guidance,
                               negative_prompt=request.negative_prompt)
        image = Image.open(io.BytesIO(png))
        image.load()
        return Generated(image=image.convert("RGB"), notes=notes)

    def close(self) -> None:
        """End the worker process (and free its GPU memory)."""
        self.worker.close()


# ---- inside the worker (working directory: the clone) --------------------------------------------


def provide_tkinter() -> bool:
    """Their ``from tkinter.messagebox import NO`` needs tkinter, which servers without ``python3-tk``
    lack; the constant is never used. Where the import fails, put a stand-in module holding it in
    the worker's ``sys.modules``. True when the stand-in was needed."""
    try:
        import tkinter.messagebox  # noqa: F401
        return False
    except ImportError:
        tkinter, messagebox = ModuleType("tkinter"), ModuleType("tkinter.messagebox")
        messagebox.NO = "no"  # type: ignore[attr-defined]
        tkinter.messagebox = messagebox  # type: ignore[attr-defined]
        tkinter.__path__ = []  # type: ignore[attr-defined]
        sys.modules["tkinter"], sys.modules["tkinter.messagebox"] = tkinter, messagebox
        return True


def instance_meta(inference: Any, spec: dict[str, Any], ckpt: str, alpha: float, save_folder: str) -> dict[str, Any]:
    """The ``meta`` their ``__main__`` block builds from a JSON input without masks, via their helpers."""
    import numpy as np

    inf = inference
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
    return dict(ckpt=ckpt, prompt=spec["caption"], phrases=[a["caption"] for a in spec["annos"]],
                polygons=polygons, scribbles=scribbles, segs=segs, locations=locations,
                points=[inf.get_point_from_box(loc) for loc in locations],
                alpha_type=[alpha, 0.0, 1 - alpha], save_folder_name=save_folder)


@contextlib.contextmanager
def checkpoint_from_checkout(root: str, ckpt: str) -> Iterator[None]:
    """Their ``load_model_ckpt`` calls ``torch.load(ckpt_path)``, written for torch < 2.6; the
    released checkpoint holds its training config (an OmegaConf object), which torch >= 2.6 refuses
    to unpickle by default. Loaded the way the authors' environment did (``weights_only=False``),
    for that one file, and only when it lies inside the user's own checkout (SECURITY.md)."""
    import torch

    original = torch.load
    trusted = Path(ckpt).resolve()
    if Path(root).resolve() not in trusted.parents:
        raise BackendError(f"{WHAT}: the checkpoint {ckpt} is outside the checkout {root}")

    def load(f: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(f, (str, os.PathLike)) and Path(f).resolve() == trusted:
            kwargs.setdefault("weights_only", False)
        return original(f, *args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


class InstanceDiffusionDriver:
    """Their ``inference`` module and model, loaded once in the worker."""

    def __init__(self, root: str, ckpt: str, test_config: str, device: str, alpha: float, mis: float,
                 guidance_scale: float, negative_prompt: str) -> None:
        import torch

        use_checkout(root)
        provide_tkinter()
        target = torch.device(device)
        if target.type == "cuda" and target.index is not None:
            torch.cuda.set_device(target)  # their .cuda() calls use the current device
        inf = import_research_module("inference", WHAT, SETUP)
        inf.device = target.type  # module-level "cuda" in theirs: the device_type of their autocast
        inf.return_att_masks = False  # set under __main__ in theirs, read by get_model_inputs
        self.args = SimpleNamespace(output="", num_images=1, guidance_scale=guidance_scale, negative_prompt=negative_prompt,
                                    input_json="", ckpt=ckpt, seed=0, alpha=alpha, mis=mis, cascade_strength=0.0,
                                    test_config=test_config)
        inf.args = self.args  # their argparse namespace, also set under __main__ only
        self.inference, self.device, self.ckpt, self.alpha, self.negative = inf, device, ckpt, alpha, negative_prompt
        with checkpoint_from_checkout(root, ckpt):
            self.model, self.autoencoder, self.text_encoder, self.diffusion, self.config = \
                inf.load_model_ckpt(ckpt, self.args, device)
        self.clip_model, self.clip_processor = inf.create_clip_pretrain_model()
        self.grounding = inf.instantiate_from_config(self.config["grounding_tokenizer_input"])
        self.model.grounding_tokenizer_input = self.grounding

    def generate(self, spec: dict[str, Any], seed: int, guidance_scale: float, negative_prompt: str | None) -> bytes:
        import torch

        inf = self.inference
        self.args.negative_prompt = negative_prompt if negative_prompt is not None else self.negative
        torch.manual_seed(seed)  # as their script does; the worker's own generator state
        noise = torch.randn(1, 4, CANVAS // 8, CANVAS // 8).to(self.device)
        with tempfile.TemporaryDirectory() as out:
            self.args.output = out  # absolute: their run() writes under args.output
            meta = instance_meta(inf, spec, self.ckpt, self.alpha, f"seed{seed}")
            inf.run(meta, self.model, self.autoencoder, self.text_encoder, self.diffusion, self.clip_model,
                    self.clip_processor, self.config, self.grounding, noise, guidance_scale=guidance_scale)
            return (Path(out) / meta["save_folder_name"] / "0.png").read_bytes()
