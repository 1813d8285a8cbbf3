"""MLLM Guidance: a multimodal LLM places, checks and re-plans the layout that a frozen
layout-grounded diffusion model draws, until the image shows what the prompt says.

    >>> from mllm_guidance import guide
    >>> result = guide("A man is sitting under a tree while a bird is in the tree.",
    ...                mllm="openai:gpt-4o", generator="sketch")
    >>> result.image_path, result.score

Importing the package is light: torch, diffusers and transformers load only inside the backends
that need them, and the names below are imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from mllm_guidance.httplogs import mask_http_logs

__version__ = "0.1.0"

mask_http_logs()  # URL credentials never reach a log handler (httpx logs request URLs)

_EXPORTS = {
    "guide": "mllm_guidance.api",
    "aguide": "mllm_guidance.api",
    "resume": "mllm_guidance.api",
    "aresume": "mllm_guidance.api",
    "plan": "mllm_guidance.api",
    "aplan": "mllm_guidance.api",
    "PlanResult": "mllm_guidance.api",
    "GuidanceResult": "mllm_guidance.run",
    "Run": "mllm_guidance.run",
    "RunSpec": "mllm_guidance.spec",
    "build_graph": "mllm_guidance.graph",
    "GuidanceConfig": "mllm_guidance.config",
    "Context": "mllm_guidance.context",
    "GuidanceState": "mllm_guidance.state",
    "Round": "mllm_guidance.state",
    "ImageRef": "mllm_guidance.state",
    "Box": "mllm_guidance.layout",
    "Layout": "mllm_guidance.layout",
    "LayoutObject": "mllm_guidance.layout",
    "RunStore": "mllm_guidance.store",
    "GenerationRequest": "mllm_guidance.backends.generator",
    "create_generator": "mllm_guidance.backends.registry",
    "resolve_mllm": "mllm_guidance.backends.mllm",
    "MllmOptions": "mllm_guidance.backends.mllm_options",
    "as_tool": "mllm_guidance.tool",
    "ReviewDecision": "mllm_guidance.review",
    "ReviewRequest": "mllm_guidance.review",
    "PendingReview": "mllm_guidance.run",
    "image_middleware": "mllm_guidance.tool",
    "GuidanceError": "mllm_guidance.errors",
    "InputError": "mllm_guidance.errors",
    "ConfigError": "mllm_guidance.errors",
    "BackendError": "mllm_guidance.errors",
    "LayoutParseError": "mllm_guidance.errors",
    "ScoreParseError": "mllm_guidance.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mllm_guidance' has no attribute {name!r}")
