"""HTTP calls of the remote generators (``comfyui:``, ``bfl:``) with the MLLM's retry policy.

A render on someone else's server fails the way an MLLM call does: rate limits, 5xx, timeouts and
dropped connections are worth another try, a refused request or a bad key is not. So these calls go
through ``retry.RetryPolicy`` (same classification, backoff and budget as ``RetryingChatModel``), and
a call that fails for good becomes one ``BackendError`` line (``errors.explain``, as for the MLLM)
that never carries a key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mllm_guidance.backends.retry import RetryPolicy
from mllm_guidance.errors import Advice, BackendError, explain
from mllm_guidance.redact import redact_text

_ADVICE = Advice(timeout="raise the generator's timeout or try later")


class RemoteHTTP:
    """One base URL, its headers (a key stays in here), a per-call timeout and a retry budget."""

    def __init__(self, base_url: str, *, who: str, headers: Mapping[str, str] | None = None, timeout: float = 60.0,
                 retries: int = 4, base_delay: float = 1.0, max_delay: float = 30.0,
                 sleep: Callable[[float], None] | None = None, key_env: str | None = None) -> None:
        try:
            import httpx
        except ImportError:
            raise BackendError(f"{who} needs httpx: pip install 'mllm-guidance[remote]'") from None

        self.base_url, self.who, self.key_env = base_url.rstrip("/"), who, key_env
        self.client = httpx.Client(base_url=self.base_url, headers=dict(headers or {}), timeout=timeout)
        self.policy = RetryPolicy(retries=retries, base_delay=base_delay, max_delay=max_delay)
        if sleep is not None:
            self.policy.sleep = sleep
        self.retried: list[str] = []  # kinds of the failures that were retried, for the notes

    def request(self, method: str, path: str, *, refuse: Callable[[Any], str | None] | None = None, **kwargs: Any) -> Any:
        """The response of a successful call (2xx). ``refuse`` turns a 4xx response into the one line
        the server's own error says (None: the generic line)."""

        def once() -> Any:
            response = self.client.request(method, path, **kwargs)
            if response.status_code >= 400 and refuse is not None and 400 <= response.status_code < 500 \
                    and response.status_code != 429:
                line = refuse(response)
                if line:
                    raise BackendError(line)
            response.raise_for_status()
            return response

        try:
            return self.policy.call(once, lambda tries, kind, exc: self.retried.append(kind))
        except BackendError:
            raise
        except Exception as exc:
            where = redact_text(f"{self.who} at {self.base_url}")
            raise BackendError(explain(exc, where, key_env=self.key_env, call=path, advice=_ADVICE)) from None

    def close(self) -> None:
        self.client.close()
