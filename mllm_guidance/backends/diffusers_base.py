"""What every diffusers-based generator shares: loading once with clear errors, device placement,
memory options, seeded generation, and keeping deprecation chatter out of the user's face."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mllm_guidance.backends.torch_device import pick_device, torch_dtype
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


def load_pipeline(what: str, model: str, load: Callable[[Any], Any], *, device: str | None, dtype: str | None,
                  cpu_offload: bool = False, attention_slicing: bool = False) -> tuple[Any, str, str]:
    """Load a pipeline with ``load(torch_dtype)``, then place it; errors say what to do."""
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
    return pipe, device, dtype


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
