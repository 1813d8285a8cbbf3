"""The generator registry: a spec string becomes a generator, built once per process.

Spec strings are ``name`` or ``name:model-id-or-path``; built-in names are listed in ``BUILTIN``,
and other packages add their own through the ``mllm_guidance.generators`` entry-point group, whose
entries point at a class (or factory) called with the options as keywords.

Generators are cached per (spec, options), so weights load once and are reused across rounds,
prompts and concurrent runs (``generator.render`` serializes their use per device).
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import Any

from mllm_guidance.backends.generator import Generator
from mllm_guidance.errors import BackendError

ENTRY_POINT_GROUP = "mllm_guidance.generators"
BUILTIN: dict[str, str] = {
    "sketch": "mllm_guidance.backends.sketch:SketchGenerator",
    "gligen": "mllm_guidance.backends.gligen:GligenGenerator",
    "gligen-xl": "mllm_guidance.backends.gligen_xl:GligenXLGenerator",
    "text2image": "mllm_guidance.backends.text2image:Text2ImageGenerator",
    "instancediffusion": "mllm_guidance.backends.instancediffusion:InstanceDiffusionGenerator",
    "rich-context": "mllm_guidance.backends.rich_context:RichContextGenerator",
    "regional-flux": "mllm_guidance.backends.regional_flux:RegionalFluxGenerator",
    "creatilayout": "mllm_guidance.backends.creatilayout:CreatiLayoutGenerator",
    "eligen-qwen": "mllm_guidance.backends.eligen_qwen:EliGenQwenGenerator",
    "serve": "mllm_guidance.backends.serve_client:ServeGenerator",  # serve:http://HOST:PORT/NAME, a Ray Serve pool
    "comfyui": "mllm_guidance.backends.comfyui:ComfyUIGenerator",
    "bfl": "mllm_guidance.backends.bfl:BflGenerator",
}

_cache: dict[tuple[str, tuple[tuple[str, Any], ...]], Generator] = {}
_cache_lock = threading.Lock()


def default_generator_spec() -> tuple[str, str]:
    """The generator to use when none is given, and why: the thesis's GLIGEN-XL where a CUDA GPU
    can run it, else the sketch preview (SDXL on a CPU takes many minutes per image)."""
    import importlib.util

    from mllm_guidance.backends.torch_device import cuda_available

    if importlib.util.find_spec("torch") is None:
        return "sketch", "torch is not installed (pip install 'mllm-guidance[local]' for diffusion generators)"
    if cuda_available():
        return "gligen-xl", "a CUDA GPU is available"
    return "sketch", "no CUDA GPU: drawing the layout; choose --generator gligen or gligen-xl to render on this machine anyway"


def available_generators() -> list[str]:
    names = set(BUILTIN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names)


def create_generator(spec: str | Generator, **options: Any) -> Generator:
    """A generator from a spec string (cached for the process) or the object itself."""
    if not isinstance(spec, str):
        if isinstance(spec, Generator):
            return spec
        raise BackendError(f"{spec!r} is neither a generator spec string nor a generator")
    name, _, model = spec.strip().partition(":")
    if model:
        options = {"model": model, **options}
    key = (spec, tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _load(name, options)
        return _cache[key]


def _load(name: str, options: dict[str, Any]) -> Generator:
    target = BUILTIN.get(name)
    factory = None
    if target is not None:
        module, _, attr = target.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    else:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                factory = ep.load()
                break
    if factory is None:
        raise BackendError(
            f"unknown generator {name!r}; available: {', '.join(available_generators())}"
        )
    try:
        return factory(**options)
    except TypeError as exc:
        raise BackendError(f"generator {name!r} does not accept these options: {exc}") from exc
