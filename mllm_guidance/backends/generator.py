"""The generator protocol: what the graph needs from a layout-to-image model, and how it calls one.

A generator draws an image for a prompt and a layout (normalized corners). Its options (model,
device, dtype, memory settings and the backend's own defaults such as GLIGEN's ``beta``) are
constructor keywords, fixed when it is built (``registry.create_generator``); a request carries only
what changes per image. ``render`` is how every caller uses a generator: one render at a time per
device, because diffusion schedulers keep per-call state and a GPU holds one model's activations.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mllm_guidance.errors import BackendError
from mllm_guidance.layout import Layout


@dataclass(frozen=True)
class GenerationRequest:
    """Everything one generation needs. ``layout`` None means render without grounding."""

    prompt: str
    layout: Layout | None
    seed: int
    width: int
    height: int
    steps: int | None = None
    guidance_scale: float | None = None
    negative_prompt: str | None = None


@dataclass
class Generated:
    """An image plus what the generator had to change to draw it (for the trace)."""

    image: Any
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class Generator(Protocol):
    """What the graph needs from a layout-to-image model."""

    name: str
    default_size: tuple[int, int]

    def generate(self, request: GenerationRequest) -> Any:
        """Return a PIL image, or a ``Generated`` with notes."""
        ...


def as_generated(result: Any) -> Generated:
    if isinstance(result, Generated):
        return result
    if hasattr(result, "save") and hasattr(result, "size"):
        return Generated(image=result)
    raise BackendError(
        f"the generator returned {type(result).__name__}; it must return a PIL image or Generated"
    )


_device_locks: dict[str, threading.Lock] = {}
_object_locks: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_locks_lock = threading.Lock()


def device_lock(generator: Generator) -> threading.Lock:
    """The lock of the device a generator renders on (``generator.device``, e.g. ``cuda:0``); a
    generator that names no device gets a lock of its own."""
    device = getattr(generator, "device", None)
    with _locks_lock:
        if isinstance(device, str) and device:
            key = device if ":" in device or device in ("cpu", "mps") else f"{device}:0"
            return _device_locks.setdefault(key, threading.Lock())
        try:
            return _object_locks.setdefault(generator, threading.Lock())
        except TypeError:  # not weak-referenceable: lock by identity for the process
            return _device_locks.setdefault(f"object:{id(generator)}", threading.Lock())


def render(generator: Generator, request: GenerationRequest) -> Generated:
    """One image from ``generator``, holding its device's lock for the whole render (blocking:
    async callers run it in a worker thread)."""
    with device_lock(generator):
        return as_generated(generator.generate(request))
