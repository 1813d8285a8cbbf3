"""Answer schemas for the structured-output mode (JSON schema / tool calling).

The reasoning field comes first on purpose: models fill fields in order, so they think before
they commit to boxes or a score, as the text prompts ask them to.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from mllm_guidance.layout import Layout


class ObjectAnswer(BaseModel):
    """One object of the layout."""

    name: str = Field(description="Description of one object, with its attributes and action.")
    box: list[float] = Field(
        description="[x1, y1, x2, y2]: top-left and bottom-right corners, normalized to [0, 1], "
        "origin at the top-left of the image.",
    )


class LayoutAnswer(BaseModel):
    """A layout with the reasoning behind it."""

    reasoning: str = Field(description="Why the layout looks like this, at most 50 words.")
    objects: list[ObjectAnswer] = Field(
        description="One entry per object. Empty only when the image already matches the prompt."
    )


class ScoreAnswer(BaseModel):
    """An evaluation of an image against its prompt."""

    reasoning: str = Field(description="Which objects and relations are present, at most 20 words.")
    score: int = Field(description="1 to 5 by the rubric in the instructions.")


class CompareAnswer(BaseModel):
    """Which of two images matches the prompt better."""

    reasoning: str = Field(description="What the better image shows that the other misses, at most 30 words.")
    better: str = Field(description="A (the first image) or B (the second image).")


def layout_from_answer(answer: LayoutAnswer, image_size: tuple[int, int] | None = None) -> Layout:
    """The structured answer through the same checks and repairs as a text answer."""
    from mllm_guidance.prompts.parse import layout_from_pairs

    return layout_from_pairs([(o.name, o.box) for o in answer.objects], image_size)


def score_from_answer(answer: ScoreAnswer) -> int:
    """The structured score through the same range check as a text answer (checked as a
    number first: a huge integer has no decimal form to put into text)."""
    from mllm_guidance.errors import ScoreParseError
    from mllm_guidance.prompts.parse import parse_score

    if not 1 <= answer.score <= 5:
        raise ScoreParseError("the score is outside 1..5; use the 1 to 5 rubric")
    return parse_score(f"Score: {answer.score}")


def better_from_answer(answer: CompareAnswer) -> str:
    """The structured choice through the same check as a text answer."""
    from mllm_guidance.prompts.parse import parse_better

    return parse_better(f"Better: {answer.better}")
