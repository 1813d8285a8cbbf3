"""The generator protocol: what the graph needs from a layout-to-image model, and how it calls one.

A generator draws an image for a prompt and a layout (normalized corners). Its options (model,
device, dtype, memory settings and the backend's own defaults such as GLIGEN's ``beta``) are
constructor keywords, fixed when it is built (``registry.create_generator``); a request carries only
what changes per image. ``render`` is how every caller uses a generator: one render at a time per
device, because diffusion schedulers keep per-call state and a GPU holds one model's activations.

A generator may also render several requests in one call: ``generate_batch(requests)`` returns one
image per request, each the image its lone ``generate`` would give (same prompt, layout and seed)
to float rounding; ``batch_key(request)`` says which requests may share a call (same size, steps,
...). One without ``generate_batch`` renders batches of one. ``render_batch`` is the batched twin of
``render``; ``backends.batching`` gathers concurrent requests into such batches.

A generator that can repair (``supports_repair = True``) takes requests whose ``repair`` is set: it
repaints only the mask (normalized boxes) of ``repair.image``, grounded on the request's layout, by
blended-latent inpainting (``backends.latent_blend``); the generate node then restores the
original's exact pixels outside the mask (``mllm_guidance.repair``). The graph never sends a repair
to a generator without that flag: it renders anew and records why.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from mllm_guidance.errors import BackendError
from mllm_guidance.layout import Layout
from mllm_guidance.repair import RepairInput


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
    repair: RepairInput | None = None
    """Set: repaint only ``repair.boxes`` of ``repair.image`` (generators with ``supports_repair``)."""


@dataclass
class Generated:
    """An image plus what the generator had to change to draw it (for the trace), and what the render
    cost where a hosted API bills it (USD; None: free or unknown)."""

    image: Any
    notes: list[str] = field(default_factory=list)
    cost_usd: float | None = None


@runtime_checkable
class Generator(Protocol):
    """What the graph needs from a layout-to-image model."""

    name: str
    default_size: tuple[int, int]

    def generate(self, request: GenerationRequest) -> Any:
        """Return a PIL image, or a ``Generated`` with notes."""
        ...

    # optional:
    #   generate_batch(requests: list[GenerationRequest]) -> list[image or Generated], in order
    #   batch_key(request) -> hashable: requests with equal keys may share one generate_batch call
    #   max_batch_size: int, the most requests one generate_batch call takes (memory)
    #   supports_repair = True: it takes requests with ``repair`` set (a masked, blended-latent repaint)
    #   schedules_itself = True: it orders its own device use (a batching or remote generator), so
    #       ``render`` must not hold a lock around it


def can_batch(generator: Any) -> bool:
    """Whether ``generator`` renders several requests in one call."""
    return callable(getattr(generator, "generate_batch", None)) and batch_limit(generator) > 1


def batch_limit(generator: Any) -> int:
    """The most requests one ``generate_batch`` call of ``generator`` takes (1: it does not batch)."""
    if not callable(getattr(generator, "generate_batch", None)):
        return 1
    limit = getattr(generator, "max_batch_size", None)
    return int(limit) if isinstance(limit, int) and limit >= 1 else 1_000_000


def batch_key(generator: Any, request: GenerationRequest) -> Any:
    """Which requests may share a batch: the generator's own ``batch_key``, else everything that is
    one value per pipeline call (size, steps, guidance, whether there is a negative prompt)."""
    own = getattr(generator, "batch_key", None)
    if callable(own):
        return own(request)
    return shared_settings(request)


def shared_settings(request: GenerationRequest, *, negative: str = "presence", grounding: bool = False) -> tuple[Any, ...]:
    """What one pipeline call takes once for all its samples: size, steps, guidance, the negative
    prompt (``presence``: whether there is one; ``text``: the text itself; ``none``: not at all) and,
    with ``grounding``, whether the request has boxes (grounded and plain renders do not mix)."""
    key: tuple[Any, ...] = (request.width, request.height, request.steps, request.guidance_scale)
    if negative == "presence":
        key += (request.negative_prompt is None,)
    elif negative == "text":
        key += (request.negative_prompt,)
    if grounding:
        key += (request.layout is not None and not request.layout.is_empty,)
    return key + (request.repair.key if request.repair is not None else None,)


def supports_repair(generator: Any) -> bool:
    """Whether ``generator`` repaints a mask (``supports_repair``), seen through wrappers that say so."""
    return bool(getattr(generator, "supports_repair", False))


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
    async callers run it in a worker thread). A generator that schedules itself is called as is."""
    if getattr(generator, "schedules_itself", False):
        return as_generated(generator.generate(request))
    with device_lock(generator):
        return as_generated(generator.generate(request))


def render_batch(generator: Generator, requests: list[GenerationRequest]) -> list[Generated]:
    """One image per request, in order: one ``generate_batch`` call holding the device's lock where
    the generator batches, else lone renders. A batch of one is always a lone ``generate``."""
    requests = list(requests)
    if len(requests) <= 1 or not callable(getattr(generator, "generate_batch", None)):
        return [render(generator, r) for r in requests]
    if getattr(generator, "schedules_itself", False):
        results = generator.generate_batch(requests)  # type: ignore[attr-defined]
    else:
        with device_lock(generator):
            results = generator.generate_batch(requests)  # type: ignore[attr-defined]
    results = list(results)
    if len(results) != len(requests):
        raise BackendError(f"{getattr(generator, 'name', '?')}.generate_batch returned {len(results)} images "
                           f"for {len(requests)} requests")
    return [as_generated(r) for r in results]
