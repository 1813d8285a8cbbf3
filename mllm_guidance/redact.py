"""Keeping API keys out of everything the project writes: run.json, logs, traces, reports.

Keys are found two ways: the values of environment variables whose names say they are secrets,
and the shapes of well-known provider keys, so a key pasted into a prompt or echoed in an error
message is masked too.
"""

from __future__ import annotations

import os
import re
from typing import Any

_SECRET_NAME = re.compile(r"(API_KEY|APIKEY|TOKEN|SECRET|PASSWORD|ACCESS_KEY)", re.IGNORECASE)
_KEY_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{30,}|hf_[A-Za-z0-9]{20,}|lsv2_[A-Za-z0-9_]{20,}"
    r"|gsk_[A-Za-z0-9]{20,}|xai-[A-Za-z0-9]{20,})"
)
MASK = "***"


def secret_values() -> list[str]:
    """Current values of secret-looking environment variables (long enough to be keys)."""
    return sorted(
        {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8},
        key=len,
        reverse=True,
    )


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    for value in secrets if secrets is not None else secret_values():
        text = text.replace(value, MASK)
    return _KEY_SHAPES.sub(MASK, text)


def redact(value: Any, secrets: list[str] | None = None) -> Any:
    """A copy of a JSON-like value with every secret masked."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, secrets) for v in value]
    return value
