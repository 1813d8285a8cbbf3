"""What every diffusers-based generator shares: loading once with clear errors, device placement,
memory options, seeded generation, keeping deprecation chatter out of the user's face, and the
single / batched render of a pipeline that grounds each prompt of a batch on its own layout
(``GroupRenderer``, ``render_regions``)."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from mllm_guidance.backends.batching import in_groups
from mllm_guidance.backends.generator import Generated, GenerationRequest, shared_settings
from mllm_guidance.backends.torch_device import pick_device, seeded_generator, torch_dtype
from mllm_guidance.errors import BackendError
from mllm_guidance.redact import redact_text


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the deprecation warnings and progress chatter of transformers and diffusers (where
    installed: the eval extra has transformers only) while loading and running models."""
    import importlib

    loggers = []
    for name in ("transformers.utils.logging", "diffusers.utils.logging"):
        try:
            loggers.append(importlib.import_module(name))
        except ImportError:
            continue
    levels = [log.get_verbosity() for log in loggers]
    for log in loggers:
        log.set_verbosity_error()
        log.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.set_verbosity(level)
            log.enable_progress_bar()


#: ``--scheduler`` choices for UNet pipelines (SD 1.x/2.x, SDXL): diffusers class and its settings.
UNET_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpm++-karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
#: ... and for flow-matching pipelines (FLUX, SD3).
FLOW_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "flow-euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "flow-heun": ("FlowMatchHeunDiscreteScheduler", {}),
}


def load_pipeline(what: str, model: str, load: Callable[[Any], Any], *, device: str | None, dtype: str | None,
                  cpu_offload: bool = False, attention_slicing: bool = False, scheduler: str | None = None,
                  compile: bool | str = False, vae_tiling: bool = False) -> tuple[Any, str, str]:
    """Load a pipeline with ``load(torch_dtype)``, then place and tune it (``tune_pipeline``);
    errors say what to do."""
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise BackendError(f"the {what} generator needs torch and diffusers: pip install 'mllm-guidance[local]' ({exc})") from None
    device, dtype = pick_device(device, dtype)
    try:
        with quiet():
            pipe = load(torch_dtype(dtype))
    except (OSError, ValueError, KeyError) as exc:
        raise BackendError(
            f"cannot load the {what} model {model!r}: {redact_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)}. "
            "Without network, give a local directory (--model-path); gated repositories need HF_TOKEN"
        ) from None
    if cpu_offload and device.startswith("cuda"):
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    if attention_slicing:
        pipe.enable_attention_slicing()
    pipe.set_progress_bar_config(disable=True)
    tune_pipeline(pipe, scheduler=scheduler, compile=compile, vae_tiling=vae_tiling)
    return pipe, device, dtype


def tune_pipeline(pipe: Any, *, scheduler: str | None = None, compile: bool | str = False, vae_tiling: bool = False) -> None:
    """The speed options, none on by default (the thesis's settings are the model's own):

    - ``scheduler``: another sampler on the model's own schedule config (``UNET_SCHEDULERS`` /
      ``FLOW_SCHEDULERS``), e.g. ``dpm++`` at 25 steps (``--steps``) instead of 50 PNDM/DDIM steps;
    - ``compile``: ``torch.compile`` the denoiser in place (channels-last memory for a UNet); a
      string or callable is the compile backend (``True``: inductor). The first renders pay the compile;
    - ``vae_tiling``: decode in tiles and batches one image at a time (large sizes, small GPUs).
    """
    if scheduler:
        pipe.scheduler = make_scheduler(pipe.scheduler, scheduler)
    if vae_tiling:
        vae = getattr(pipe, "vae", None)
        if vae is None or not hasattr(vae, "enable_tiling"):
            raise BackendError("--vae-tiling: this pipeline's VAE cannot decode in tiles")
        vae.enable_tiling()
        if hasattr(vae, "enable_slicing"):
            vae.enable_slicing()
    if compile:
        import torch

        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        if denoiser is None:
            raise BackendError("--compile: this pipeline has no UNet or transformer to compile")
        if getattr(pipe, "unet", None) is not None:
            denoiser.to(memory_format=torch.channels_last)
        denoiser.compile(backend="inductor" if compile is True else compile)


def make_scheduler(current: Any, name: str) -> Any:
    """The scheduler ``name`` built from the pipeline's current scheduler config (its betas,
    timestep spacing, prediction type), so the model's training schedule is kept."""
    import diffusers

    flow = type(current).__name__.startswith("FlowMatch")
    table = FLOW_SCHEDULERS if flow else UNET_SCHEDULERS
    if name not in table:
        kind = "flow-matching (FLUX, SD3)" if flow else "UNet (Stable Diffusion, SDXL)"
        raise BackendError(f"--scheduler {name!r} does not fit this {kind} model; choose one of {', '.join(table)}")
    cls_name, settings = table[name]
    return getattr(diffusers, cls_name).from_config(current.config, **settings)


def first_image(output: Any) -> Any:
    return output.images[0]


def read_model_json(path: str, name: str) -> dict[str, Any]:
    """A JSON file of a checkpoint: from the local folder, else from the hub repository ``path``."""
    local = Path(path) / name
    if local.exists():
        return json.loads(local.read_text())
    if Path(path).exists():
        raise OSError(f"{local} does not exist")
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(path, name)).read_text())


def negative_prompts(requests: list[Any]) -> list[str] | None:
    """The negative prompts of a batch as a pipeline takes them: None when no request has one."""
    if all(r.negative_prompt is None for r in requests):
        return None
    return [r.negative_prompt or "" for r in requests]


def repair_inputs(request: GenerationRequest) -> dict[str, Any]:
    """The project's pipelines' repair arguments for a request (none when it is a plain render)."""
    if request.repair is None:
        return {}
    return {"repair_image": request.repair.image, "repair_boxes": [list(b) for b in request.repair.boxes]}


class GroupRenderer:
    """``generate``, ``batch_key`` and ``generate_batch`` of a generator whose pipeline renders a group
    of requests in one call (``_render_group``): a lone render is a group of one, and a batch is split
    into groups of equal ``batch_key`` (``shares``: what a group has in common, in the keywords of
    ``generator.shared_settings``)."""

    shares: ClassVar[dict[str, Any]] = {}

    def generate(self, request: GenerationRequest) -> Generated:
        return self._render_group([request])[0]

    def batch_key(self, request: GenerationRequest) -> tuple[Any, ...]:
        return shared_settings(request, **self.shares)

    def generate_batch(self, requests: list[GenerationRequest]) -> list[Generated]:
        """One pipeline call per group of requests that share ``batch_key``, each on its own layout."""
        return in_groups(requests, self.batch_key, self._render_group)

    def _render_group(self, requests: list[GenerationRequest]) -> list[Generated]:
        raise NotImplementedError


def render_regions(name: str, pipe: Any, requests: list[GenerationRequest], inputs: list[tuple[Any, Any, list[str]]],
                   before: list[str], after: list[str], **kwargs: Any) -> list[Generated]:
    """One call of a pipeline that takes ``(prompt, regions)`` (``regional_flux_pipeline``, the
    CreatiLayout pipelines) over a group: each request's prompt, its ``grounding_inputs`` as
    (phrase, box) regions and its seeded generator (a lone request passes them unbatched), the first
    request's repair. Each image's notes are ``before``, its own grounding notes, then ``after``."""
    first, single = requests[0], len(requests) == 1
    regions = [list(zip(phrases, boxes, strict=True)) for phrases, boxes, _ in inputs]
    try:
        with quiet():
            images = pipe(first.prompt if single else [r.prompt for r in requests], regions[0] if single else regions,
                          generator=seeded_generator(first.seed) if single else [seeded_generator(r.seed) for r in requests],
                          **repair_inputs(first), **kwargs).images
    except ValueError as exc:
        raise BackendError(f"{name} could not render: {exc}") from exc
    return [Generated(image=image, notes=before + notes + after) for image, (_, _, notes) in zip(images, inputs, strict=True)]
