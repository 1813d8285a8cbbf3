"""The four step prompts as data, their rendering to chat messages, and answer parsing."""

from mllm_guidance.errors import GuidanceError, LayoutParseError, ScoreParseError
from mllm_guidance.prompts.parse import extract_reasoning, layout_from_pairs, parse_layout, parse_score
from mllm_guidance.prompts.schemas import LayoutAnswer, ScoreAnswer
from mllm_guidance.prompts.steps import STEP_KEY, STEPS, Step, step_named
from mllm_guidance.prompts.templates import TemplateSet, export_templates, load_templates

__all__ = [
    "STEPS",
    "STEP_KEY",
    "Step",
    "step_named",
    "GuidanceError",
    "LayoutAnswer",
    "LayoutParseError",
    "ScoreAnswer",
    "ScoreParseError",
    "TemplateSet",
    "export_templates",
    "extract_reasoning",
    "layout_from_pairs",
    "load_templates",
    "parse_layout",
    "parse_score",
]
