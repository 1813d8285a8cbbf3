"""Retrying MLLM calls that may succeed later, and explaining the ones that will not.

Providers raise different exception classes (openai, google-genai, httpx, ollama), so failures are
classified by what they carry: an HTTP status, or the class name of a timeout / connection error,
following ``__cause__`` chains that LangChain adds. Rate limits (429), server errors (5xx),
timeouts and dropped connections are retried with exponential backoff and jitter; authentication,
bad requests and unknown models are not, because the same call would fail the same way.

Client-level retries are switched off by the resolver (``max_retries=0``), so that this one policy
is the only one and its budget is the one the user set.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mllm_guidance.redact import redact_text

T = TypeVar("T")
RETRYABLE = frozenset({"rate_limit", "server", "timeout", "unreachable"})
_UNREACHABLE_NAMES = ("Connect", "Connection", "RemoteProtocol", "ReadError", "NetworkError", "WriteError")


def status_of(exc: BaseException) -> int | None:
    for attr in ("status_code", "code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify(exc: BaseException) -> str:
    """One of rate_limit, server, timeout, unreachable, auth, not_found, bad_request, other."""
    for e in _chain(exc):
        status = status_of(e)
        if status is not None:
            if status == 429:
                return "rate_limit"
            if status >= 500 or status in (408, 409, 425):
                return "server"
            if status in (401, 403):
                return "auth"
            if status == 404:
                return "not_found"
            if 400 <= status < 500:
                return "bad_request"
        name = type(e).__name__
        if "Timeout" in name or isinstance(e, TimeoutError):
            return "timeout"
        if any(part in name for part in _UNREACHABLE_NAMES) or isinstance(e, ConnectionError):
            return "unreachable"
    return "other"


@dataclass
class RetryPolicy:
    """``retries`` extra tries after the first, waiting base * 2^n (capped), with equal jitter."""

    retries: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def call(self, fn: Callable[[], T], on_retry: Callable[[int, str, BaseException], None] | None = None) -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                kind = classify(exc)
                if kind not in RETRYABLE or attempt >= self.retries:
                    exc.mllm_guidance_tries = attempt + 1  # type: ignore[attr-defined]
                    raise
                if on_retry is not None:
                    on_retry(attempt + 1, kind, exc)
                self.sleep(self.delay(attempt))
                attempt += 1


def explain(exc: BaseException, who: str, key_env: str | None = None) -> str:
    """One actionable line for a call that failed for good."""
    kind = classify(exc)
    tries = getattr(exc, "mllm_guidance_tries", 1)
    status = next((s for s in (status_of(e) for e in _chain(exc)) if s is not None), None)
    detail = redact_text(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)[:300]
    code = f" ({status})" if status else ""
    if kind == "auth":
        fix = f"check {key_env}" if key_env else "check the API key"
        return f"{who} rejected the credentials{code}: {fix}"
    if kind == "not_found":
        return f"{who}: model or endpoint not found{code}; check the model name given to --mllm (and --mllm-base-url)"
    if kind == "bad_request":
        return f"{who} refused the request{code}: {detail}"
    if kind == "unreachable":
        return f"cannot reach {who} after {tries} tries: {detail}; is the server running and the URL right?"
    if kind == "timeout":
        return f"{who} did not answer in time after {tries} tries; raise --mllm-timeout or try later"
    if kind in ("rate_limit", "server"):
        return f"{who} kept failing after {tries} tries{code}: {detail}; try again later or raise --mllm-retries"
    return f"{who} failed: {type(exc).__name__}: {detail}"


def describe_target(model: Any) -> str:
    """``ChatOpenAI(gpt-4o) at http://...`` for messages: what failed, and where."""
    name = getattr(model, "model_name", None) or getattr(model, "model", None) or getattr(model, "model_id", None)
    base = getattr(model, "openai_api_base", None) or getattr(model, "base_url", None)
    text = f"{type(model).__name__}({name})" if name else type(model).__name__
    return f"{text} at {base}" if base else text
