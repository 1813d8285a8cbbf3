"""One small error hierarchy, so callers can catch everything of ours with one class, and the one
reading of a failed call to a service (an MLLM provider, a remote generator).

Every message is meant to be read by a user: it says what went wrong and what to do. No message
holds a secret: whatever text an error quotes (a provider's reply, a generator's exception, a URL
with a password in it) is masked when the error is made (``redact``), so it can be printed, logged,
checkpointed or sent to a client as it is.

Providers raise different exception classes (openai, google-genai, httpx, ollama), so a failed call
is classified by what it carries: an HTTP status, or the class name of a timeout / connection error,
following the ``__cause__`` chains LangChain adds. This module imports none of them: it reads names
and attributes, so the nodes and the retry policy share it without loading a client.
"""

from __future__ import annotations

from dataclasses import dataclass
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



# What a failed call was: the one classification the retries, the nodes and the remote generators share.

RETRYABLE = frozenset({"rate_limit", "server", "timeout", "unreachable"})
_UNREACHABLE_NAMES = ("Connect", "Connection", "RemoteProtocol", "ReadError", "NetworkError", "WriteError")


def status_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (on itself or on its ``response``), if any."""
    for attr in ("status_code", "code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it was raised from or during (at most ten, no cycles)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def classify(exc: BaseException) -> str:
    """One of rate_limit, server, timeout, unreachable, auth, not_found, bad_request, other."""
    for e in causes(exc):
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


@dataclass(frozen=True)
class Advice:
    """What a user can do about a failure, in the words of the caller's own options."""

    timeout: str = "try later"
    retry: str = "try again later"
    not_found: str | None = None  # None: a 404 reads as a refused call


MLLM_ADVICE = Advice(timeout="raise --mllm-timeout or try later", retry="try again later or raise --mllm-retries",
                     not_found="check the model name given to --mllm (and --mllm-base-url)")


def explain(exc: BaseException, who: str, *, key_env: str | None = None, call: str | None = None,
            advice: Advice = Advice()) -> str:
    """One actionable line for a call to ``who`` (``call``: what was asked, e.g. a path) that failed
    for good, after the tries its retry policy noted on it."""
    kind = classify(exc)
    tries = getattr(exc, "mllm_guidance_tries", 1)
    status = next((s for s in map(status_of, causes(exc)) if s is not None), None)
    detail = redact_text((str(exc).strip().splitlines() or [type(exc).__name__])[0])[:300]
    code = f" ({status})" if status else ""
    if kind == "auth":
        return f"{who} rejected the credentials{code}: check {key_env or 'the API key'}"
    if kind == "not_found" and advice.not_found:
        return f"{who}: model or endpoint not found{code}; {advice.not_found}"
    if kind in ("bad_request", "not_found"):
        return f"{who} refused {call or 'the request'}{code}: {detail}"
    if kind == "unreachable":
        return f"cannot reach {who} after {tries} tries: {detail}; is the server running and the URL right?"
    if kind == "timeout":
        return f"{who} did not answer{f' {call}' if call else ''} in time after {tries} tries; {advice.timeout}"
    if kind in ("rate_limit", "server"):
        return f"{who} kept failing after {tries} tries{code}: {detail}; {advice.retry}"
    return f"{who} failed{code}: {type(exc).__name__}: {detail}"


_KEY_ENV = {"ChatOpenAI": "OPENAI_API_KEY", "ChatGoogleGenerativeAI": "GOOGLE_API_KEY (or GEMINI_API_KEY)"}


def provider_model(model: Any) -> Any:
    """The provider model inside a ``RetryingChatModel`` (any other object as it is); read by
    attribute, so this module needs no LangChain."""
    return getattr(model, "wrapped", None) or model


def key_env_for(model: Any) -> str | None:
    """The environment variable that holds this model's key, for error messages."""
    return _KEY_ENV.get(type(provider_model(model)).__name__)


def model_name_of(model: Any) -> Any:
    """The name a provider model goes by (``model_name``, ``model`` or ``model_id``), or None."""
    model = provider_model(model)
    return getattr(model, "model_name", None) or getattr(model, "model", None) or getattr(model, "model_id", None)


def describe_model(model: Any) -> str:
    """``ChatOpenAI(gpt-4o) at http://...`` for messages: what failed, and where."""
    model, name = provider_model(model), model_name_of(model)
    base = getattr(model, "openai_api_base", None) or getattr(model, "base_url", None)
    text = f"{type(model).__name__}({name})" if name else type(model).__name__
    return redact_text(f"{text} at {base}" if base else text)  # a URL may carry user:password or ?key=


def explain_mllm(exc: BaseException, model: Any) -> str:
    """One actionable line for a call to the chat model ``model`` that failed for good."""
    return explain(exc, describe_model(model), key_env=key_env_for(model), advice=MLLM_ADVICE)
