"""Coalescing: concurrent renders on one batching generator become one ``generate_batch`` call.

The benchmark runner has many prompts in flight; their renders reach the generator one by one,
from worker threads. ``BatchingGenerator`` wraps a generator that renders batches: each ``generate``
call waits in a queue, and one thread per wrapped generator takes the oldest request with every
waiting request that may share its batch (``generator.batch_key``), up to ``max_batch``, waiting at
most ``max_wait`` seconds after the oldest arrived for the batch to fill, and renders them together
(``render_batch``, holding the device's lock as lone renders do). While a batch renders, the next
requests queue up, so under load batches fill without any wait.

A batch that fails is rendered again one request at a time, so a request that cannot be rendered
fails alone, with its own error. The wrapper ``schedules_itself``: ``render`` calls it without a
lock, and it looks like the generator it wraps (name, size, device, license).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from mllm_guidance.backends.generator import (
    GenerationRequest,
    Generated,
    Generator,
    batch_key,
    batch_limit,
    render,
    render_batch,
)

#: Seconds the oldest waiting request waits for a batch to fill (a few ms: a render takes seconds).
DEFAULT_MAX_WAIT = 0.005
#: Seconds an idle batching thread lives before it exits (a new request starts another).
IDLE_EXIT = 30.0


@dataclass
class _Waiting:
    request: GenerationRequest
    key: Any
    arrived: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: Generated | None = None
    error: BaseException | None = None


class BatchingGenerator:
    """``generator`` with concurrent ``generate`` calls rendered together, up to ``max_batch`` at a time."""

    schedules_itself = True

    def __init__(self, generator: Generator, max_batch: int = 4, max_wait: float = DEFAULT_MAX_WAIT) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.inner = generator
        self.max_batch = min(int(max_batch), batch_limit(generator))
        self.max_wait = max(0.0, float(max_wait))
        self._queue: list[_Waiting] = []
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self.batches: list[int] = []  # sizes of the batches rendered, for benchmarks and tests

    def __getattr__(self, name: str) -> Any:  # name, default_size, device, weights_license, ...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def generate(self, request: GenerationRequest) -> Generated:
        if self.max_batch <= 1:
            return render(self.inner, request)
        waiting = _Waiting(request, batch_key(self.inner, request))
        with self._cond:
            self._queue.append(waiting)
            if self._worker is None:
                self._worker = threading.Thread(target=self._serve, name=f"batching-{getattr(self.inner, 'name', '?')}",
                                                daemon=True)
                self._worker.start()
            self._cond.notify_all()
        waiting.done.wait()
        if waiting.error is not None:
            raise waiting.error
        assert waiting.result is not None
        return waiting.result

    def generate_batch(self, requests: list[GenerationRequest]) -> list[Generated]:
        return render_batch(self.inner, requests)

    # -- the batching thread ------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._render(batch)

    def _next_batch(self) -> list[_Waiting] | None:
        with self._cond:
            idle_since = time.monotonic()
            while not self._queue:
                if time.monotonic() - idle_since > IDLE_EXIT:
                    self._worker = None
                    return None
                self._cond.wait(IDLE_EXIT)
            first = self._queue[0]
            while True:
                same = [w for w in self._queue if w.key == first.key][: self.max_batch]
                left = first.arrived + self.max_wait - time.monotonic()
                if len(same) >= self.max_batch or left <= 0:
                    break
                self._cond.wait(left)
            for w in same:
                self._queue.remove(w)
            return same

    def _render(self, batch: list[_Waiting]) -> None:
        try:
            results = render_batch(self.inner, [w.request for w in batch])
            self.batches.append(len(batch))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting callers
            if len(batch) == 1:
                batch[0].error = exc
                batch[0].done.set()
                return
            for w in batch:  # one bad request must not fail the others: render each alone
                self._render([w])
            return
        for w, result in zip(batch, results, strict=True):
            w.result = result
            w.done.set()


def coalescing(generator: Generator, max_batch: int, max_wait: float = DEFAULT_MAX_WAIT) -> Generator:
    """``generator`` wrapped to batch concurrent renders, or itself when it cannot batch or
    ``max_batch`` is 1."""
    from mllm_guidance.backends.generator import can_batch

    if max_batch <= 1 or not can_batch(generator):
        return generator
    return BatchingGenerator(generator, max_batch, max_wait)  # type: ignore[return-value]


def in_groups(requests: list[GenerationRequest], key: Any, render_group: Any) -> list[Any]:
    """Render ``requests`` as groups of equal ``key(request)`` (first-seen order), one
    ``render_group(list)`` call each, and return the results in the requests' order: how a backend's
    ``generate_batch`` takes a batch whose requests cannot all share one pipeline call."""
    groups: dict[Any, list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault(key(request), []).append(i)
    results: list[Any] = [None] * len(requests)
    for indices in groups.values():
        for i, result in zip(indices, render_group([requests[i] for i in indices]), strict=True):
            results[i] = result
    return results
