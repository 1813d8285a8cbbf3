"""Keeping secrets out of everything the project writes or prints: one function for every sink.

Every file (spec.json, run.json, calls.jsonl, report.html, checkpoints, results.jsonl), every
line on the terminal, every error message and every trace payload passes through ``redact`` (or
``redact_text`` for one string) on its way out. Secrets are found four ways:

- the values of environment variables whose names say they are secrets (``OPENAI_API_KEY``,
  ``HF_TOKEN``, ``..._PASSWORD``...), wherever they appear: echoed by a model, pasted into a prompt,
  quoted in a provider's error;
- the shapes of well-known provider keys (``sk-...``, ``AIza...``, ``hf_...``), set or not;
- credentials inside URLs: the ``user:password@`` part, and query parameters whose names say they
  are secrets (``?key=``, ``api_key=``, ``token=``, ``sig=``...);
- HTTP credentials quoted in raw errors: ``Bearer ...`` and ``x-api-key: ...``.

Each is replaced by ``***``. Masking is deliberately generous: hiding a harmless word that looks
like a key costs less than printing a key that does not look like one.

Most text holds no secret, and the patterns cost about 60 µs per KB to scan. So each pattern runs
only on text that holds the literal every match of it must contain (a key shape's prefix, ``://``,
``=``, ``bearer`` / ``api-key`` in any case): the same result, a few µs per KB. The environment's
secret-looking names are recognised once per name.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

from pydantic import BaseModel

_SECRET_NAME = re.compile(r"(API_KEY|APIKEY|TOKEN|SECRET|PASSWORD|PASSWD|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.IGNORECASE)
_KEY_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{16,}|AIza[0-9A-Za-z_\-]{30,}|hf_[A-Za-z0-9]{20,}|lsv2_[A-Za-z0-9_]{20,}"
    r"|gsk_[A-Za-z0-9]{20,}|xai-[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|AKIA[0-9A-Z]{16}|xox[abposr]-[A-Za-z0-9\-]{10,})"
)
#: ``scheme://userinfo@``: the userinfo (user, or user:password) is masked whole.
_URL_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@?#\"'<>]+@")
#: A query parameter whose name says it is a secret: ``?key=...``, ``&api_key=...``, ``&X-Amz-Signature=...``.
_QUERY_SECRET = re.compile(
    r"([?&;](?:[A-Za-z0-9_.\-]*[_.\-])?(?:key|apikey|token|secret|password|passwd|pwd|pass|auth|sig|signature|credential)=)"
    r"[^&#\s\"'<>]+",
    re.IGNORECASE,
)
#: Credentials as raw HTTP errors quote them: ``Bearer abc...``, ``x-api-key: abc...``.
_HEADER_SECRET = re.compile(
    r"(\bBearer\s+)[A-Za-z0-9._~+/\-]{6,}=*|(\b(?:x-api-key|api-key|x-goog-api-key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+",
    re.IGNORECASE,
)
MASK = "***"
#: What every match of ``_KEY_SHAPES`` starts with (a test checks each alternative against it).
KEY_PREFIXES = ("sk-", "AIza", "hf_", "lsv2_", "gsk_", "xai-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
                "AKIA", "xox")
#: What every match of ``_HEADER_SECRET`` holds, lower-cased (checked so on ASCII text only: Unicode
#: case folding lets ``re.IGNORECASE`` match letters that ``str.lower`` does not map, e.g. "ı").
HEADER_WORDS = ("bearer", "api-key")


@functools.lru_cache(maxsize=1024)
def _secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def secret_values() -> list[str]:
    """Current values of secret-looking environment variables (long enough to be keys), longest first."""
    return sorted({v for k, v in os.environ.items() if len(v) >= 8 and _secret_name(k)}, key=len, reverse=True)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every secret masked (see the module docstring for what counts)."""
    for value in secrets if secrets is not None else secret_values():
        if value in text:
            text = text.replace(value, MASK)
    if any(prefix in text for prefix in KEY_PREFIXES):
        text = _KEY_SHAPES.sub(MASK, text)
    if "://" in text:
        text = _URL_USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)
    if text.isascii() and not any(word in text.lower() for word in HEADER_WORDS):
        return text
    return _HEADER_SECRET.sub(lambda m: (m.group(1) or m.group(2)) + MASK, text)


def redact(value: Any, secrets: list[str] | None = None) -> Any:
    """A copy of ``value`` with every secret masked in every string it holds.

    JSON-like values (dicts, lists, tuples, sets), pydantic models (the state's rounds, layouts,
    failures: copied with their masked fields) and exceptions (their arguments) are walked; a value
    holding no secret comes back as the same object, so checkpoints of clean runs are unchanged."""
    secrets = secret_values() if secrets is None else secrets
    return _walk(value, secrets, 0)


def _walk(value: Any, secrets: list[str], depth: int) -> Any:
    if depth > 64:  # nothing the project writes nests this deep; never recurse without end
        return value
    if isinstance(value, str):
        masked = redact_text(value, secrets)
        return value if masked == value else masked
    if isinstance(value, (int, float, bool, bytes, type(None))):
        return value
    if isinstance(value, dict):
        out = {_walk(k, secrets, depth + 1): _walk(v, secrets, depth + 1) for k, v in value.items()}
        return value if _same_dict(out, value) else out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_walk(v, secrets, depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value, strict=False)):
            return value
        return type(value)(items) if type(value) in (list, tuple, set, frozenset) else items
    if isinstance(value, BaseModel):
        changed = {}
        for name in type(value).model_fields:
            current = getattr(value, name, None)
            masked = _walk(current, secrets, depth + 1)
            if masked is not current:
                changed[name] = masked
        return value.model_copy(update=changed) if changed else value
    if isinstance(value, BaseException):
        args = tuple(_walk(a, secrets, depth + 1) for a in value.args)
        if all(a is b for a, b in zip(args, value.args, strict=True)):
            return value
        try:
            copy = type(value)(*args)
        except Exception:  # an exception class with another signature: keep its type's name only
            copy = RuntimeError(f"{type(value).__name__}: {redact_text(str(value), secrets)}")
        return copy
    return value


def _same_dict(new: dict[Any, Any], old: dict[Any, Any]) -> bool:
    if len(new) != len(old):
        return False
    for (k1, v1), (k2, v2) in zip(new.items(), old.items(), strict=True):
        if k1 is not k2 or v1 is not v2:
            return False
    return True
