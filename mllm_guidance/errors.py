"""One small error hierarchy, so callers can catch everything of ours with one class.

Every message is meant to be read by a user: it says what went wrong and what to do. No message
holds a secret: whatever text an error quotes (a provider's reply, a generator's exception, a URL
with a password in it) is masked when the error is made (``redact``), so it can be printed, logged,
checkpointed or sent to a client as it is.
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.redact import redact_text


class GuidanceError(Exception):
    """Base of every error mllm-guidance raises on purpose."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact_text(a) if isinstance(a, str) else a for a in args))


class InputError(GuidanceError, ValueError):
    """The prompt, a size or another argument cannot be used as given."""


class ConfigError(GuidanceError, ValueError):
    """A configuration value or combination is invalid."""


class ParseError(GuidanceError, ValueError):
    """An MLLM answer could not be turned into the structure a step needs."""

    def __init__(self, message: str, text: str | None = None) -> None:
        super().__init__(message)
        self.text = text


class LayoutParseError(ParseError):
    """No valid layout could be read from an answer."""


class ScoreParseError(ParseError):
    """No valid 1..5 score could be read from an answer."""


class CompareParseError(ParseError):
    """No choice between the two images (A or B) could be read from an answer."""


class StorageError(GuidanceError, RuntimeError):
    """A directory the run writes to cannot take the write: full disk, read-only, or not a directory."""


class BackendError(GuidanceError, RuntimeError):
    """A model backend could not be built, loaded or called."""


class ReplayError(BackendError):
    """A replayed recording ran out or does not match the run asking it."""


class RunIncomplete(GuidanceError):
    """A command ran but did not deliver everything it was asked for: a run that began and ended
    without its image (a backend failed mid-run, a recording ran out: its directory keeps the
    checkpoint, so it can be resumed), or a benchmark with failed items. Exit status 3."""

    exit_code = 3


def first_problem(exc: Any) -> str:
    """The first complaint of a pydantic ``ValidationError`` as a person reads it: the message our
    validator wrote, without pydantic's "Value error, " or "Assertion failed, " in front."""
    message = str(exc.errors()[0]["msg"]) if exc.errors() else str(exc)
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message

