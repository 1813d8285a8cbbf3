"""``rich-context``: Rich-context Layout-to-Image (Cheng et al., NeurIPS 2024) through its official code.

Install: ``git clone https://github.com/cplusx/rich_context_L2I`` and its ``requirements.txt``; set
``RICH_CONTEXT_L2I_REPO`` to the clone (or pass ``repo=``). Their code needs a CUDA GPU: without one
the adapter fails at load unless ``device`` is given.

Loading follows the authors' current recipe (their ``inference.ipynb`` since 20 October 2024, commit
8c11939; read at cc4ca46): their regional-attention UNet from the diffusers-style repository
``cplusx/rich_context_l2i_sdxl`` (subfolder ``unet``), then their ``StableDiffusionXLRegionalAttnPipeline``
from the same repository with that UNet, moved to the device. ``model`` may name that repository
(default), another hub id or a local copy of it. Nothing else is fetched: no SDXL base, no refiner,
and no initial regional-attention weights (``misc_utils/init_regional_unet.py`` is for training and
for the old route).

The old route (before October 2024) is taken only when asked, by giving a ``.pt`` checkpoint as
``model`` (their ``rich_context_sdxl_e580.pt``, Hugging Face ``cplusx/rich_context_sdxl``): their
``get_pipe`` builds an fp16 regional UNet from the initial weights named in ``configs/layout_sdxl.yaml``
(``regional_attn_sdxl_512_init_weights``, made by ``python misc_utils/init_regional_unet.py
--model_path hotshotco/SDXL-512 --save_path regional_attn_sdxl_512_init_weights --model_type ca``),
the fp16 SDXL base and the fp32 ``madebyollin/sdxl-vae-fp16-fix`` VAE, moves them to "cuda" (so this
route is CUDA-only), and would also download the ~6 GB SDXL refiner, which their notebook never
used: the worker lets ``get_pipe`` run with the refiner left unloaded. Their ``load_ckpt`` then loads
the checkpoint into the UNet.

Every call runs under fp16 autocast, as the authors always call the pipeline
(``torch.cuda.amp.autocast(dtype=torch.float16)``): their UNet and VAE may be in different
precisions (fp16 UNet and fp32 VAE on the old route; on the current route whatever the installed
diffusers and transformers load the stored weights as), and without autocast their decode fails
with a dtype mismatch. The autocast device follows ``device`` (CPU autocast supports fp16 too).
Their code runs in a worker process started in the clone (see ``research_code``).

Native input: ``boxes`` as a numpy array of pixel corners ``[x1, y1, x2, y2]`` on a 512 x 512
canvas and one rich description per box in ``labels``. Defaults as in their notebook: 50 steps,
guidance 5.0, scheduled-sampling beta 1, their ``NEGATIVE_PROMPTS``. SDXL-based.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from mllm_guidance.backends.generator import GenerationRequest, Generated
from mllm_guidance.backends.research_code import ResearchCode, ResearchWorker, import_research_module, research_device, use_checkout
from mllm_guidance.layout import Box, Layout

WHAT = "Rich-context L2I"
REPO_URL = "https://github.com/cplusx/rich_context_L2I"
SETUP = "pip install -r requirements.txt in the clone"
DEFAULT_MODEL = "cplusx/rich_context_l2i_sdxl"
INIT_WEIGHTS_COMMAND = ("python misc_utils/init_regional_unet.py --model_path hotshotco/SDXL-512 "
                        "--save_path regional_attn_sdxl_512_init_weights --model_type ca")
REFINER = "stabilityai/stable-diffusion-xl-refiner-1.0"
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


def is_legacy_checkpoint(model: str) -> bool:
    return model.endswith((".pt", ".pth", ".ckpt"))


class RichContextGenerator:
    name = "rich-context"
    default_size = (CANVAS, CANVAS)

    def __init__(self, model: str = DEFAULT_MODEL, *, repo: str | None = None, config: str = "configs/layout_sdxl.yaml",
                 beta: float = 1.0, steps: int = 50, guidance_scale: float = 5.0, device: str | None = None) -> None:
        code = ResearchCode(WHAT, repo, "RICH_CONTEXT_L2I_REPO", REPO_URL, SETUP)
        options: dict[str, Any] = {"root": str(code.root)}
        if is_legacy_checkpoint(model):
            options["checkpoint"] = code.file(model, "checkpoint", "download rich_context_sdxl_e580.pt from Hugging Face "
                                              "cplusx/rich_context_sdxl, or leave model unset for the current release")
            options["config"] = code.file(config, "config", f"one of the configs/*.yaml of {REPO_URL}")
        else:
            local = Path(model).expanduser()
            options["model"] = str(local.resolve()) if local.exists() else model
        self.device = options["device"] = research_device(device, WHAT, "the authors run it on CUDA under fp16 autocast")
        self.model, self.beta, self.steps, self.guidance_scale = model, beta, steps, guidance_scale
        self.worker = ResearchWorker(code, "mllm_guidance.backends.rich_context:RichContextDriver", options)

    def generate(self, request: GenerationRequest) -> Generated:
        from PIL import Image

        boxes, labels, notes = rich_context_input(request.prompt, request.layout)
        if (request.width, request.height) != (CANVAS, CANVAS):
            notes.append(f"Rich-context L2I renders on its {CANVAS}x{CANVAS} canvas")
        png = self.worker.call(
            "generate", prompt=request.prompt, negative_prompt=request.negative_prompt, boxes=boxes, labels=labels,
            beta=self.beta, steps=request.steps or self.steps,
            guidance_scale=request.guidance_scale if request.guidance_scale is not None else self.guidance_scale,
            seed=request.seed,
        )
        image = Image.open(io.BytesIO(png))
        image.load()
        return Generated(image=image.convert("RGB"), notes=notes)

    def close(self) -> None:
        """End the worker process (and free its GPU memory)."""
        self.worker.close()


# ---- inside the worker (working directory: the clone) --------------------------------------------


class _RefinerNotLoaded:
    """Stands in for the refiner class while their ``get_pipe`` runs: their notebook never used the
    refiner, and loading it would download about 6 GB."""

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> _RefinerNotLoaded:
        return cls()

    def to(self, *args: Any, **kwargs: Any) -> _RefinerNotLoaded:
        return self


class RichContextDriver:
    """Their pipeline, built once in the worker."""

    def __init__(self, root: str, device: str, model: str | None = None, checkpoint: str | None = None,
                 config: str | None = None) -> None:
        import torch

        use_checkout(root)
        target = torch.device(device)
        if target.type == "cuda" and target.index is not None:
            torch.cuda.set_device(target)  # the old route's get_pipe moves to "cuda", the current device
        self.device = device
        self.autocast_device = target.type
        if checkpoint is not None:
            settings = import_research_module("omegaconf", WHAT, SETUP).OmegaConf.load(config)
            unet_params = settings.unet.params
            # relative to the clone in their config; a name that does not resolve would be taken for a hub id
            unet_params.pretrained_model_name_or_path = ResearchCode(WHAT, root, "", REPO_URL, SETUP).file(
                unet_params.pretrained_model_name_or_path, "initial regional-attention UNet",
                f"run {INIT_WEIGHTS_COMMAND} in the clone")
        pipelines = import_research_module("pipelines.sdxl_pipeline", WHAT, SETUP)
        unets = import_research_module("regional_attention.diffusers_unet", WHAT, SETUP)
        datasets = import_research_module("inference_on_dataset", WHAT, SETUP)  # their notebook takes NEGATIVE_PROMPTS from it
        self.negative = datasets.NEGATIVE_PROMPTS
        if checkpoint is None:
            unet = unets.UNet2DConditionModel.from_pretrained(model, subfolder="unet")
            self.pipe = pipelines.StableDiffusionXLRegionalAttnPipeline.from_pretrained(model, unet=unet).to(device)
        else:
            refiner = datasets.StableDiffusionXLImg2ImgPipeline
            datasets.StableDiffusionXLImg2ImgPipeline = _RefinerNotLoaded
            try:
                self.pipe, _, _ = datasets.get_pipe("sdxl", settings)
            finally:
                datasets.StableDiffusionXLImg2ImgPipeline = refiner
            datasets.load_ckpt(checkpoint, self.pipe)

    def generate(self, prompt: str, negative_prompt: str | None, boxes: Any, labels: list[str], beta: float,
                 steps: int, guidance_scale: float, seed: int) -> bytes:
        import torch

        with torch.no_grad(), torch.autocast(device_type=self.autocast_device, dtype=torch.float16):
            generated = self.pipe(
                prompt=prompt, negative_prompt=negative_prompt if negative_prompt is not None else self.negative,
                height=CANVAS, width=CANVAS, boxes=boxes, labels=labels, scheduled_sampling_beta=beta,
                num_inference_steps=steps, guidance_scale=guidance_scale,
                generator=torch.Generator(device="cpu").manual_seed(int(seed)),
            )
        out = io.BytesIO()
        generated[0][0].convert("RGB").save(out, format="PNG")
        return out.getvalue()
