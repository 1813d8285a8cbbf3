"""How each step turns an answer (text or structured) into a value, with the step's own rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mllm_guidance.errors import LayoutParseError
from mllm_guidance.layout import Layout
from mllm_guidance.prompts.parse import parse_layout, parse_score
from mllm_guidance.prompts.schemas import LayoutAnswer, layout_from_answer, score_from_answer


def layout_readers(
    *, allow_empty: bool, image_size: tuple[int, int] | None = None
) -> tuple[Callable[[str], Layout], Callable[[Any], Layout]]:
    """Readers for place/self-correct (a layout is required) and align (empty means aligned)."""

    def check(layout: Layout) -> Layout:
        if layout.is_empty and not allow_empty:
            raise LayoutParseError("the layout is empty; give at least one object with its box")
        return layout

    def read_text(text: str) -> Layout:
        return check(parse_layout(text, image_size))

    def read_structured(answer: LayoutAnswer) -> Layout:
        return check(layout_from_answer(answer, image_size))

    return read_text, read_structured


def score_readers() -> tuple[Callable[[str], int], Callable[[Any], int]]:
    return parse_score, score_from_answer
