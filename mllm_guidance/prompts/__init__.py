"""The four step prompts as data, their rendering to chat messages, and answer parsing.

The names below load on first use, as the package's own do: the steps table (which the config and
the command line's ``--help`` read) must not pull in LangChain with the templates."""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "GuidanceError": "mllm_guidance.errors",
    "LayoutParseError": "mllm_guidance.errors",
    "ScoreParseError": "mllm_guidance.errors",
    "extract_reasoning": "mllm_guidance.prompts.parse",
    "layout_from_pairs": "mllm_guidance.prompts.parse",
    "parse_layout": "mllm_guidance.prompts.parse",
    "parse_score": "mllm_guidance.prompts.parse",
    "LayoutAnswer": "mllm_guidance.prompts.schemas",
    "ScoreAnswer": "mllm_guidance.prompts.schemas",
    "STEP_KEY": "mllm_guidance.prompts.steps",
    "STEPS": "mllm_guidance.prompts.steps",
    "Step": "mllm_guidance.prompts.steps",
    "step_named": "mllm_guidance.prompts.steps",
    "TemplateSet": "mllm_guidance.prompts.templates",
    "export_templates": "mllm_guidance.prompts.templates",
    "load_templates": "mllm_guidance.prompts.templates",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mllm_guidance.prompts' has no attribute {name!r}")
