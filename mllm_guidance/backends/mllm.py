"""Turning ``--mllm`` into a LangChain chat model.

Specs: ``replay:PATH`` (a recorded run), or ``provider:model`` handed to LangChain's
``init_chat_model`` (``openai:gpt-4o``, ``google_genai:gemini-2.5-flash``,
``ollama:gemma3:27b``, ...). A chat model object is used as it is. With no spec, the default is
chosen from the environment: OPENAI_API_KEY -> GPT-4o (the thesis's MLLM), GOOGLE_API_KEY or
GEMINI_API_KEY -> Gemini 2.5 Flash.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel

from mllm_guidance.errors import BackendError
from mllm_guidance.redact import redact_text

_EXTRAS = {"openai": "openai", "google_genai": "gemini", "ollama": "ollama"}
_PACKAGES = {"openai": "langchain-openai", "google_genai": "langchain-google-genai", "ollama": "langchain-ollama"}


def default_mllm_spec(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The spec to use when none is given, and why it was chosen."""
    env = os.environ if environ is None else environ
    if env.get("OPENAI_API_KEY"):
        return "openai:gpt-4o", "OPENAI_API_KEY is set"
    if env.get("GOOGLE_API_KEY") or env.get("GEMINI_API_KEY"):
        return "google_genai:gemini-2.5-flash", "GOOGLE_API_KEY or GEMINI_API_KEY is set"
    raise BackendError(
        "no MLLM given and no API key found: set OPENAI_API_KEY (GPT-4o) or GOOGLE_API_KEY "
        "(Gemini), or pass --mllm (e.g. --mllm replay:examples/recordings/man-under-tree.json "
        "to replay a recorded run offline)"
    )


def resolve_mllm(spec: str | BaseChatModel | None) -> BaseChatModel:
    """A chat model from a spec string, the environment's default, or the model itself."""
    if isinstance(spec, BaseChatModel):
        return spec
    if spec is None:
        spec, _ = default_mllm_spec()
    if not isinstance(spec, str) or not spec.strip():
        raise BackendError(f"--mllm must be a spec like 'openai:gpt-4o', got {spec!r}")
    spec = spec.strip()
    if spec.startswith("replay:"):
        from mllm_guidance.backends.replay import ReplayChatModel

        return ReplayChatModel.from_path(spec.removeprefix("replay:"))
    provider, sep, model = spec.partition(":")
    if not sep or not model:
        raise BackendError(
            f"MLLM spec {spec!r} needs a provider: write it as provider:model, e.g. openai:gpt-4o"
        )
    try:
        from langchain.chat_models import init_chat_model

        return init_chat_model(model, model_provider=provider)
    except ImportError as exc:
        package = _PACKAGES.get(provider, f"the LangChain package for {provider!r}")
        extra = _EXTRAS.get(provider)
        hint = f"pip install 'mllm-guidance[{extra}]'" if extra else f"pip install {package}"
        raise BackendError(f"the {provider!r} MLLM needs {package}: {hint} ({exc})") from None
    except Exception as exc:  # provider constructors raise many types; the message is what matters
        raise BackendError(f"could not create the MLLM {spec!r}: {redact_text(str(exc))}") from None


def describe_mllm(model: BaseChatModel) -> str:
    """A short, key-free name for run.json: class and model name."""
    name = getattr(model, "model_name", None) or getattr(model, "model", None)
    if model.__class__.__name__ == "ReplayChatModel":
        name = getattr(model, "path", None)
    return f"{model.__class__.__name__}({name})" if name else model.__class__.__name__
