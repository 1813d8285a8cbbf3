"""Turning ``--mllm`` into a LangChain chat model: one string picks the planner/judge.

=====================================  ========================================================
spec                                   model
=====================================  ========================================================
``openai:gpt-4o``                      OpenAI (any model name); OPENAI_API_KEY
``openai:MODEL`` + ``base_url``        any OpenAI-compatible server: vLLM, llama.cpp, LM Studio
``google_genai:gemini-2.5-flash``      Gemini through google-genai; GOOGLE_API_KEY or GEMINI_API_KEY
``gemini-2.5-flash`` / ``gpt-4o``      bare names: Gemini always through google-genai (never
                                       Vertex), gpt-* / o* through OpenAI
``ollama:gemma3:27b``                  a local Ollama server (OLLAMA_HOST or ``base_url``)
``transformers:google/gemma-3-4b-it``  in process on transformers (hub id or local path)
``replay:RUN.json``                    answers from a recorded run
``PROVIDER:MODEL``                     anything else LangChain's ``init_chat_model`` knows
=====================================  ========================================================

A chat model object is used as it is. Every provider model built here has no client-level
retries and is wrapped in ``backends.retry.RetryingChatModel``: the one retry policy (and its
budget) travels with the model, to the graph's nodes, the benchmark's judge and the agent tool
alike, and so does its key's rate-limit budget (``--mllm-rpm`` / ``--mllm-tpm``: ``rate_limit``, one
per key, so a guide and a judge with one key share it). ``MllmOptions`` are the settings a spec string is resolved with; runs record them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from langchain_core.language_models import BaseChatModel

from mllm_guidance.backends.mllm_options import MllmOptions
from mllm_guidance.backends.retry import RetryingChatModel
from mllm_guidance.errors import BackendError, model_name_of, provider_model
from mllm_guidance.redact import redact_text

_PACKAGES = {"openai": ("langchain-openai", "openai"), "google_genai": ("langchain-google-genai", "gemini"),
             "ollama": ("langchain-ollama", "ollama"), "transformers": ("transformers", "local")}


def default_mllm_spec(environ: Mapping[str, str] | None = None, memory_gib: float | None = None) -> tuple[str, str]:
    """The spec to use when none is given, and why it was chosen.

    OPENAI_API_KEY -> GPT-4o (the thesis's MLLM); else GOOGLE_API_KEY or GEMINI_API_KEY -> Gemini
    2.5 Flash; else, on a GPU, the in-process Gemma-3 that fits it: 27B with at least 64 GiB of
    GPU memory (about 55 GB of bf16 weights; the thesis's open model), 12B with 32 GiB, else 4B
    (the smallest Gemma-3 with vision). With no key and no GPU it stops at once and names the
    variables to set: the only choice left would be a gated multi-GB download answering in minutes
    on a CPU, which nobody wants by default (it stays one flag away).
    """
    env = os.environ if environ is None else environ
    if env.get("OPENAI_API_KEY"):
        return "openai:gpt-4o", "OPENAI_API_KEY is set"
    if env.get("GOOGLE_API_KEY") or env.get("GEMINI_API_KEY"):
        return "google_genai:gemini-2.5-flash", "GOOGLE_API_KEY or GEMINI_API_KEY is set"
    if memory_gib is None:
        device, memory_gib = _accelerator()
    else:
        device = "cuda"
    if device is None:
        raise BackendError(
            "no MLLM given and no API key found: set OPENAI_API_KEY (GPT-4o) or GOOGLE_API_KEY "
            "(Gemini), install 'mllm-guidance[local]' to run Gemma-3 in process, or pass --mllm "
            "(e.g. --mllm replay:examples/recordings/man-under-tree.json to replay a recorded run)"
        )
    if device == "cpu":
        raise BackendError(
            "no MLLM given, no API key found and no GPU: set OPENAI_API_KEY (GPT-4o) or GOOGLE_API_KEY / "
            "GEMINI_API_KEY (Gemini), or point at a server (--mllm openai:MODEL --mllm-base-url URL, or "
            "--mllm ollama:gemma3). Gemma-3 4B on this CPU is one flag away but slow, and a gated multi-GB "
            "download (HF_TOKEN): --mllm transformers:google/gemma-3-4b-it"
        )
    size = "27b" if memory_gib >= 64 else "12b" if memory_gib >= 32 else "4b"
    return (
        f"transformers:google/gemma-3-{size}-it",
        f"no API key found; Gemma-3 {size.upper()} fits this {device} ({memory_gib:.0f} GiB)",
    )


def resolve_mllm(
    spec: str | BaseChatModel | None,
    options: MllmOptions | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **settings: Any,
) -> BaseChatModel:
    """A chat model from a spec string, the environment's default, or the model itself.

    ``options`` (or the same settings as keywords: ``base_url``, ``timeout``, ``retries``...)
    apply to spec strings."""
    if isinstance(spec, BaseChatModel):
        return spec
    try:
        opts = (options or MllmOptions()).model_copy(update=settings) if settings else (options or MllmOptions())
        opts = MllmOptions.model_validate(opts.model_dump())
    except ValueError as exc:
        raise BackendError(f"invalid MLLM options: {exc}") from None
    env = os.environ if environ is None else environ
    if spec is None:
        spec, _ = default_mllm_spec(env)
    if not isinstance(spec, str) or not spec.strip():
        raise BackendError(f"--mllm must be a spec like 'openai:gpt-4o', got {spec!r}")
    provider, model = split_spec(spec.strip())
    if provider == "replay":
        from mllm_guidance.backends.replay import ReplayChatModel

        return ReplayChatModel.from_path(model)
    try:
        if provider == "transformers":
            from mllm_guidance.backends.local_vlm import LocalVLMChatModel

            return LocalVLMChatModel.load(model, device=opts.device, dtype=opts.dtype)
        from langchain.chat_models import init_chat_model

        kwargs = _provider_kwargs(provider, model, opts.base_url, opts.timeout, env)
        chat = init_chat_model(model, model_provider=provider, **kwargs)
        return RetryingChatModel(wrapped=chat, retries=opts.retries, base_delay=opts.retry_base_delay,
                                 max_delay=opts.retry_max_delay, timeout=opts.timeout,
                                 budget=_budget(provider, opts, kwargs))
    except ImportError as exc:
        package, extra_name = _PACKAGES.get(provider, (f"the LangChain package for {provider!r}", None))
        hint = f"pip install 'mllm-guidance[{extra_name}]'" if extra_name else f"pip install {package}"
        raise BackendError(f"the {provider!r} MLLM needs {package}: {hint} ({exc})") from None
    except BackendError:
        raise
    except Exception as exc:  # provider constructors raise many types; the message is what matters
        raise BackendError(f"could not create the MLLM {spec!r}: {redact_text(str(exc))}") from None


def split_spec(spec: str) -> tuple[str, str]:
    """``provider:model`` -> (provider, model); bare Gemini and OpenAI names get their provider."""
    provider, sep, model = spec.partition(":")
    if sep and model and re.fullmatch(r"[a-z_][a-z0-9_-]*", provider):
        return provider, model
    if re.match(r"(?i)gemini-", spec):
        return "google_genai", spec  # never let LangChain route a bare gemini-* to Vertex AI
    if re.match(r"(?i)(gpt-|o[1-9](-|$)|chatgpt-)", spec):
        return "openai", spec
    raise BackendError(
        f"MLLM spec {spec!r} needs a provider: write it as provider:model, e.g. openai:gpt-4o, "
        "google_genai:gemini-2.5-flash, ollama:gemma3:27b, transformers:google/gemma-3-4b-it"
    )


def describe_mllm(model: BaseChatModel) -> str:
    """A short, key-free name for run.json: class and model name."""
    model, name = provider_model(model), model_name_of(model)
    if model.__class__.__name__ == "ReplayChatModel":
        name = getattr(model, "path", None)
    return f"{model.__class__.__name__}({name})" if name else model.__class__.__name__


def model_name(model: BaseChatModel) -> str | None:
    """The provider's model name (``gpt-4o``), used to look up prices."""
    name = model_name_of(model)
    return str(name).removeprefix("models/") if name else None


# -- providers --------------------------------------------------------------------------------


def _provider_kwargs(provider: str, model: str, base_url: str | None, timeout: float, env: Mapping[str, str]) -> dict[str, Any]:
    """What ``init_chat_model`` needs per provider: key, server, timeout, and no client retries."""
    if provider == "openai":
        key = env.get("OPENAI_API_KEY")
        if not key and not base_url:
            raise BackendError(
                f"openai:{model} needs an API key: export OPENAI_API_KEY=... (or give --mllm-base-url "
                "for a local OpenAI-compatible server such as vLLM, llama.cpp or LM Studio)"
            )
        # local OpenAI-compatible servers accept any key
        return {"api_key": key or "not-needed", "base_url": base_url, "timeout": timeout, "max_retries": 0}
    if provider == "google_genai":
        key = env.get("GOOGLE_API_KEY") or env.get("GEMINI_API_KEY")
        if not key:
            raise BackendError(f"google_genai:{model} needs an API key: export GOOGLE_API_KEY=... (or GEMINI_API_KEY)")
        extra = {"base_url": base_url} if base_url else {}
        return {"google_api_key": key, "timeout": timeout, "max_retries": 0, **extra}
    if provider == "ollama":
        host = base_url or env.get("OLLAMA_HOST") or "http://127.0.0.1:11434"
        return {"base_url": host, "client_kwargs": {"timeout": timeout}}
    return {"timeout": timeout, "max_retries": 0, **({"base_url": base_url} if base_url else {})}


def _budget(provider: str, opts: MllmOptions, kwargs: dict[str, Any]) -> Any:
    """The key's shared rate-limit budget (``backends.rate_limit``) when --mllm-rpm / --mllm-tpm are given."""
    if opts.rpm is None and opts.tpm is None:
        return None
    from mllm_guidance.backends.rate_limit import key_fingerprint, shared_budget

    key = kwargs.get("api_key") or kwargs.get("google_api_key")
    server = kwargs.get("base_url") or opts.base_url
    return shared_budget(key_fingerprint(provider, str(server or ""), str(key or "")), opts.rpm, opts.tpm)


def _accelerator() -> tuple[str | None, float]:
    """("cuda", GiB) / ("mps", GiB) / ("cpu", GiB) when torch is installed, else (None, 0); torch is
    imported only where a GPU may be (``torch_device.cuda_available``)."""
    import importlib.util
    import sys

    from mllm_guidance.backends.torch_device import cuda_available

    if importlib.util.find_spec("torch") is None:
        return None, 0.0
    if not cuda_available() and sys.platform != "darwin":
        return "cpu", 0.0
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_properties(0).total_memory / 2**30
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps", 16.0
    return "cpu", 0.0
