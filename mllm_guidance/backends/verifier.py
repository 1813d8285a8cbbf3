"""The verifier protocol: what the generate node needs to rank a render's candidates, and where a
verifier comes from.

A verifier scores images for a prompt and the layout they were drawn from (higher is better):
``rank(prompt, layout, images) -> list[float]``. The built-in ones reuse the benchmark's scorer
models and live in ``eval/verifiers.py``; they are looked up by name and loaded once per process,
so the node never imports a scorer (torch, transformers) itself. A run may bring its own verifier
object on its ``Context`` instead.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, Protocol, runtime_checkable

from mllm_guidance.errors import ConfigError
from mllm_guidance.layout import Layout

#: Built-in verifiers by name: the class in ``mllm_guidance.eval.verifiers``.
BUILTIN = {"clip": "ClipVerifier", "layout-clip": "LayoutClipVerifier", "blip-vqa": "BlipVqaVerifier"}

_LOADED: dict[tuple[str, str | None, str | None], Any] = {}
_LOCK = threading.Lock()


@runtime_checkable
class Verifier(Protocol):
    name: str

    def rank(self, prompt: str, layout: Layout | None, images: list[Any]) -> list[float]:
        """One score per image, in order; higher is better."""
        ...


def resolve_verifier(name: str, model: str | None = None, device: str | None = None) -> Verifier:
    """The built-in verifier ``name`` (loaded once per process and setting)."""
    if name not in BUILTIN:
        raise ConfigError(f"unknown verifier {name!r}; choose one of {', '.join(BUILTIN)}")
    key = (name, model, device)
    with _LOCK:
        if key not in _LOADED:
            module = importlib.import_module("mllm_guidance.eval.verifiers")
            _LOADED[key] = getattr(module, BUILTIN[name])(model, device=device)
        return _LOADED[key]
