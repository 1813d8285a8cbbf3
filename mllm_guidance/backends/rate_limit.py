"""Staying inside an API key's rate limit instead of running into it.

A provider counts requests and tokens per minute per key; above either it answers 429 and the
call is retried later, which wastes the wait, and a benchmark whose retries run out fails items.
``MllmBudget`` keeps the calls of one key under ``--mllm-rpm`` / ``--mllm-tpm``:

- two token buckets, one over requests and one over tokens. A call takes its *estimated* tokens
  (text length, images, the usual answer) before it starts and settles the difference with the
  *actual* count the provider reports when it ends; the estimator learns the ratio of the two.
  Each bucket fills at ``(1 - headroom)`` of the budget and holds ``headroom`` of a minute, so no
  60-second window (the strictest reading of "per minute") ever sees more than the budget;
- an adaptive concurrency limit (AIMD, as in TCP): a 429 halves the number of calls in flight (once
  per wave of calls: those started before the cut do not cut again), every success gives back
  ``1 / limit``, i.e. one call per round trip; a ``Retry-After`` the provider sends holds every new
  call of the key until that time.

One budget per key and process (``shared_budget``): the guide and the judge built with the same key
(and server) share one, so together they stay inside it. The budget's key is a hash: the API key
itself is never stored here. Clocks are injected, so the arithmetic is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from mllm_guidance.errors import BackendError, causes

#: Tokens one image costs, for the estimate before the provider counts: GPT-4o's high-detail 1024 px
#: image (85 + 4 tiles x 170); Gemini counts 258 per image, so this errs on the safe side.
IMAGE_TOKENS = 765
#: Characters per text token, the usual rule of thumb for English with GPT-4o's and Gemini's tokenizers.
CHARS_PER_TOKEN = 4
#: Share of the budget kept free (see the module docstring), and the most calls a key has in flight.
HEADROOM = 0.05
CEILING = 64
#: The longest ``Retry-After`` honoured, in seconds (a daily quota's hours would stall a run silently).
MAX_RETRY_AFTER = 600.0


class TokenBucket:
    """``per_minute`` units a minute, at most ``capacity`` saved up. The level may go below zero
    (a call that used more than it was estimated to): later takers wait until it is paid back."""

    def __init__(self, per_minute: float, capacity: float, now: float) -> None:
        if per_minute <= 0 or capacity <= 0:
            raise ValueError("a bucket needs a positive rate and capacity")
        self.rate = per_minute / 60.0
        self.capacity = float(capacity)
        self.level = float(capacity)
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
            self._stamp = now

    def wait(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` may be taken (0: now). A take larger than the capacity waits
        for a full bucket and leaves it in debt."""
        self._refill(now)
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float, now: float) -> None:
        self._refill(now)
        self.level -= amount

    def settle(self, extra: float, now: float) -> None:
        """Correct a take by ``extra`` (positive: it used more than it took; negative: less)."""
        self._refill(now)
        self.level = min(self.capacity, self.level - extra)


class AdaptiveLimiter:
    """How many calls may be in flight: halved on a 429, one more per ``limit`` successes."""

    def __init__(self, ceiling: int = CEILING, floor: int = 1) -> None:
        self.ceiling, self.floor = max(1, ceiling), max(1, floor)
        self.limit = float(self.ceiling)
        self.in_flight = 0
        self.blocked_until = 0.0
        self._last_cut = -math.inf

    def wait(self, now: float) -> float:
        """Seconds until a call may start (``inf``: when one in flight ends)."""
        if now < self.blocked_until:
            return self.blocked_until - now
        return 0.0 if self.in_flight < int(self.limit) else math.inf

    def start(self) -> None:
        self.in_flight += 1

    def succeeded(self) -> None:
        self.in_flight -= 1
        self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)

    def failed(self) -> None:
        self.in_flight -= 1

    def rate_limited(self, started: float, now: float, retry_after: float | None) -> None:
        """A 429 for a call started at ``started``: cut once per wave, and honour ``Retry-After``."""
        self.in_flight -= 1
        if started >= self._last_cut:
            self.limit = max(float(self.floor), self.limit / 2)
            self._last_cut = now
        if retry_after:
            self.blocked_until = max(self.blocked_until, now + retry_after)


@dataclass
class Ticket:
    """One call's place in the budget: when it started and the tokens it took."""

    started: float
    tokens: int
    raw_estimate: int


class MllmBudget:
    """The requests- and tokens-per-minute budget of one API key (see the module docstring)."""

    def __init__(self, rpm: int | None = None, tpm: int | None = None, *, headroom: float = HEADROOM,
                 ceiling: int = CEILING, clock: Callable[[], float] = time.monotonic) -> None:
        if rpm is None and tpm is None:
            raise ValueError("a budget needs rpm or tpm")
        self.rpm, self.tpm, self.clock = rpm, tpm, clock
        now = clock()
        self.requests = TokenBucket(rpm * (1 - headroom), max(1.0, rpm * headroom), now) if rpm else None
        self.tokens = TokenBucket(tpm * (1 - headroom), max(1.0, tpm * headroom), now) if tpm else None
        self.limiter = AdaptiveLimiter(ceiling)
        self._lock = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._ratio = 1.0  # actual / estimated tokens, learned
        self._answer_tokens = 300.0  # a usual answer's tokens (the learned ratio corrects the sum)
        # what happened, for the bench's load line
        self.started_at = now
        self.calls = self.used_tokens = self.rate_limited = 0
        self.waited = 0.0

    # -- estimating ---------------------------------------------------------------------------

    def estimate(self, messages: Sequence[Any]) -> tuple[int, int]:
        """(tokens to take, the raw estimate before the learned correction) for a call's messages."""
        chars = images = 0
        for message in messages:
            content = getattr(message, "content", message)
            for part in content if isinstance(content, list) else [content]:
                if isinstance(part, str):
                    chars += len(part)
                elif isinstance(part, dict):
                    if part.get("type") in ("image", "image_url"):
                        images += 1
                    elif isinstance(part.get("text"), str):
                        chars += len(part["text"])
        raw = int(chars / CHARS_PER_TOKEN + images * IMAGE_TOKENS + self._answer_tokens)
        return max(1, int(raw * self._ratio)), max(1, raw)

    # -- taking a turn ------------------------------------------------------------------------

    def try_start(self, tokens: int, raw: int | None = None) -> tuple[Ticket | None, float]:
        """A ticket when the call may start now, else (None, seconds to wait at most)."""
        with self._lock:
            now = self.clock()
            waits = [self.limiter.wait(now)]
            if self.requests:
                waits.append(self.requests.wait(1, now))
            if self.tokens:
                waits.append(self.tokens.wait(tokens, now))
            wait = max(waits)
            if wait > 0:
                return None, wait
            self.limiter.start()
            if self.requests:
                self.requests.take(1, now)
            if self.tokens:
                self.tokens.take(tokens, now)
            return Ticket(started=now, tokens=tokens, raw_estimate=raw or tokens), 0.0

    async def acquire(self, tokens: int, raw: int | None = None) -> Ticket:
        """Wait (without blocking the event loop) until the call may start."""
        started = time.monotonic()
        while True:
            ticket, wait = self.try_start(tokens, raw)
            if ticket is not None:
                self.waited += time.monotonic() - started
                return ticket
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            with self._lock:
                self._waiters.append((loop, future))
            try:
                await asyncio.wait_for(future, None if math.isinf(wait) else wait)
            except asyncio.TimeoutError:
                pass
            finally:
                with self._lock:
                    if (loop, future) in self._waiters:
                        self._waiters.remove((loop, future))

    def acquire_blocking(self, tokens: int, raw: int | None = None) -> Ticket:
        """``acquire`` for synchronous callers (a worker thread)."""
        started = time.monotonic()
        while True:
            ticket, wait = self.try_start(tokens, raw)
            if ticket is not None:
                self.waited += time.monotonic() - started
                return ticket
            with self._lock:
                self._lock.wait(None if math.isinf(wait) else wait)

    def finish(self, ticket: Ticket, *, tokens: int | None = None, rate_limited: bool = False,
               retry_after: float | None = None) -> None:
        """A call ended: with its actual ``tokens`` (None: unknown, the estimate stands), or refused."""
        with self._lock:
            now = self.clock()
            if rate_limited:
                self.rate_limited += 1
                self.limiter.rate_limited(ticket.started, now, retry_after)
            elif tokens is None:
                self.limiter.failed()
            else:
                self.limiter.succeeded()
                self.calls += 1
                self.used_tokens += tokens
                if self.tokens:
                    self.tokens.settle(tokens - ticket.tokens, now)
                self._ratio = min(4.0, max(0.25, 0.8 * self._ratio + 0.2 * tokens / ticket.raw_estimate))
            self._lock.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop is closed
                pass

    def describe(self) -> str:
        parts = [f"{self.rpm} requests/min" if self.rpm else "", f"{self.tpm} tokens/min" if self.tpm else ""]
        return " and ".join(p for p in parts if p)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_budgets: weakref.WeakValueDictionary[str, MllmBudget] = weakref.WeakValueDictionary()
_budgets_lock = threading.Lock()


def key_fingerprint(*parts: str | None) -> str:
    """A hash naming an API key (with its provider and server): the key is never kept."""
    return hashlib.sha256("\0".join(p or "" for p in parts).encode()).hexdigest()[:16]


def shared_budget(fingerprint: str, rpm: int | None, tpm: int | None) -> MllmBudget:
    """The budget of one key in this process: made by the first model built with it, shared by the
    rest (the guide and the judge); a second model asking other numbers for the same key is refused."""
    with _budgets_lock:
        budget = _budgets.get(fingerprint)
        if budget is None:
            budget = MllmBudget(rpm, tpm)
            _budgets[fingerprint] = budget
        elif (budget.rpm, budget.tpm) != (rpm, tpm):
            raise BackendError(f"this API key already has a budget of {budget.describe()}; give every model that uses "
                               "it the same --mllm-rpm / --mllm-tpm")
        return budget


def retry_after(exc: BaseException) -> float | None:
    """Seconds a provider asked to wait (``Retry-After`` / ``retry-after-ms``), from the error or its
    causes, at most ``MAX_RETRY_AFTER``."""
    for current in causes(exc):
        headers = getattr(getattr(current, "response", None), "headers", None)
        if headers is not None:
            try:
                if headers.get("retry-after-ms") is not None:
                    return min(MAX_RETRY_AFTER, max(0.0, float(headers["retry-after-ms"]) / 1000))
                if headers.get("retry-after") is not None:
                    return min(MAX_RETRY_AFTER, max(0.0, float(headers["retry-after"])))
            except (TypeError, ValueError):  # an HTTP date: not worth parsing, the backoff applies
                return None
    return None


def tokens_of(result: Any) -> int | None:
    """The tokens a chat result reports (input + output), None where the provider says nothing."""
    for generation in getattr(result, "generations", None) or []:
        usage = getattr(getattr(generation, "message", None), "usage_metadata", None)
        if usage:
            return int(usage.get("total_tokens") or usage.get("input_tokens", 0) + usage.get("output_tokens", 0))
    usage = (getattr(result, "llm_output", None) or {}).get("token_usage") or {}
    total = usage.get("total_tokens")
    return int(total) if total else None
