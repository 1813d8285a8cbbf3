"""The four MLLM steps in one table: what each sends, what it reads back and how it is shown.

Every other place that needs to know something about a step (the template loader, the nodes, the
structured-output mode, the progress display, replay) reads it from ``STEPS``, so a new step or a
change of wording is made here once.

=================  ===============  ===========  ==========================================
step               request fields   sees image   answer
=================  ===============  ===========  ==========================================
``place``          prompt           no           a non-empty layout
``self_correct``   prompt, objects  no           a non-empty layout
``reason``         prompt           yes          a 1..5 score with its reasoning
``align``          prompt           yes          a layout; empty means "the image matches"
``compare``        prompt           yes (two)    A or B: which image fits the prompt better
=================  ===============  ===========  ==========================================

``compare`` is asked only with ``judge_mode="pairwise"``, when a new image ties the best so far.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from mllm_guidance.errors import CompareParseError, LayoutParseError, ParseError, ScoreParseError
from mllm_guidance.layout import Layout
from mllm_guidance.prompts.parse import parse_better, parse_layout, parse_score
from mllm_guidance.prompts.schemas import (CompareAnswer, LayoutAnswer, ScoreAnswer, better_from_answer, layout_from_answer,
                                           score_from_answer)

StepName = Literal["place", "self_correct", "reason", "align", "compare"]
#: Metadata key through which a node tells the chat model which step is asking (replay and the
#: test doubles answer by it; traces show it).
STEP_KEY = "mllm_guidance_step"
#: Metadata key carrying the round of the step.
ROUND_KEY = "mllm_guidance_round"


@dataclass(frozen=True)
class Step:
    """One MLLM step of the method."""

    name: StepName
    #: ``$fields`` its request template must use.
    request_fields: frozenset[str]
    #: how a few-shot example reads after its ``User prompt:`` line: ``(label, field)`` in order; a
    #: layout field is a ``label:`` line with the objects below it (none for an empty layout where
    #: an empty answer is valid). Its fields are the ones every example of this step must have.
    example_lines: tuple[tuple[str, str], ...]
    #: whether the current image is attached to the request.
    sees_image: bool
    #: the structured-output schema (``--structured``).
    schema: type[BaseModel]
    #: the error an unreadable answer raises.
    error: type[ParseError]
    #: for layout steps: whether an empty layout is a valid answer.
    allow_empty: bool
    #: one line for the progress display, from the node's ``step`` event.
    describe: Callable[[dict[str, Any]], str]
    #: optional request blocks (``=== NAME ===`` in its template) and the fields each may use.
    optional_blocks: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def example_fields(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.example_lines)

    @property
    def reads_layout(self) -> bool:
        return self.schema is LayoutAnswer

    def read_text(self, text: str, image_size: tuple[int, int] | None = None) -> Any:
        """The step's value from a text answer, or the step's parse error."""
        if self.schema is CompareAnswer:
            return parse_better(text)
        if not self.reads_layout:
            return parse_score(text)
        return self._check(parse_layout(text, image_size))

    def read_structured(self, answer: Any, image_size: tuple[int, int] | None = None) -> Any:
        """The step's value from a structured answer, through the same checks as text."""
        if self.schema is CompareAnswer:
            return better_from_answer(answer)
        if not self.reads_layout:
            return score_from_answer(answer)
        return self._check(layout_from_answer(answer, image_size))

    def _check(self, layout: Layout) -> Layout:
        if layout.is_empty and not self.allow_empty:
            raise LayoutParseError("the layout is empty; give at least one object with its box")
        return layout

    def render_example(self, example: Any) -> str:
        """A few-shot example as the model should answer it (see ``templates.Example``)."""
        lines = [f"User prompt: {example.prompt}"]
        for label, name in self.example_lines:
            value = getattr(example, name)
            if name not in _LAYOUT_FIELDS:
                lines.append(f"{label}: {value}")
                continue
            lines.append(f"{label}:")
            if value or not self.allow_empty:
                lines.append(_objects_text(value))
        return "\n".join(lines)


#: the fields of ``templates.Example`` that hold a layout (a list of objects with boxes).
_LAYOUT_FIELDS = frozenset({"objects", "current"})


def _objects_text(objects: Any) -> str:
    return Layout.from_pairs((o.name, o.box) for o in objects or []).to_lines()


def _score_line(event: dict[str, Any]) -> str:
    score = event.get("score")
    return f"score {score if score is not None else '?'}/5" + (" · good" if event.get("good") else "")


def _align_line(event: dict[str, Any]) -> str:
    if event.get("stop"):
        return f"stop: {event['stop']}"
    return f"new layout, {event.get('objects')} objects"


STEPS: dict[str, Step] = {
    "place": Step(
        name="place", request_fields=frozenset({"prompt"}), sees_image=False,
        example_lines=(("Objects", "objects"),),
        schema=LayoutAnswer, error=LayoutParseError, allow_empty=False,
        describe=lambda e: f"{e.get('objects')} objects",
    ),
    "self_correct": Step(
        name="self_correct", request_fields=frozenset({"prompt", "objects"}), sees_image=False,
        example_lines=(("Current objects", "current"), ("Reasoning", "reasoning"), ("Updated objects", "objects")),
        schema=LayoutAnswer, error=LayoutParseError, allow_empty=False,
        describe=lambda e: "changed" if e.get("changed") else "unchanged: layout settled",
    ),
    "reason": Step(
        name="reason", request_fields=frozenset({"prompt"}), sees_image=True,
        example_lines=(("Reasoning", "reasoning"), ("Score", "score")),
        schema=ScoreAnswer, error=ScoreParseError, allow_empty=False, describe=_score_line,
    ),
    "align": Step(
        name="align", request_fields=frozenset({"prompt"}), sees_image=True,
        example_lines=(("Reasoning", "reasoning"), ("Updated objects", "objects")),
        schema=LayoutAnswer, error=LayoutParseError, allow_empty=True, describe=_align_line,
        optional_blocks={
            "evaluation": frozenset({"score", "reasoning"}),  # align_context: reasoning
            "layout": frozenset({"objects"}),  # align_context: reasoning+layout
            "empty answer": frozenset({"score", "reasoning"}),  # align_empty: reask
        },
    ),
    "compare": Step(
        name="compare", request_fields=frozenset({"prompt"}), sees_image=True,
        example_lines=(("Reasoning", "reasoning"), ("Better", "better")),
        schema=CompareAnswer, error=CompareParseError, allow_empty=False,
        describe=lambda e: f"better: {e.get('better') or '?'}" + (" (the new image)" if e.get("better") == "B" else ""),
    ),
}
STEP_NAMES: tuple[str, ...] = tuple(STEPS)


def step_named(name: str) -> Step:
    """The step called ``name``; ``self-correct`` is accepted for ``self_correct``."""
    key = name.strip().replace("-", "_")
    if key not in STEPS:
        raise KeyError(f"unknown step {name!r}; choose from {', '.join(STEP_NAMES)}")
    return STEPS[key]
