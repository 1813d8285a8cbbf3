"""Human-in-the-loop review: a person approves, edits or stops the layout before it is rendered.

With ``GuidanceConfig.review`` set, the graph pauses (LangGraph ``interrupt``) after the layout is
planned and self-corrected, before the first render (``plan``), and with ``plan+align`` also after
each align, before its render. The pause carries a ``ReviewRequest``; the run continues with a
``ReviewDecision`` (LangGraph ``Command(resume=...)``): approve the layout, edit it (any valid
layout: a ``Layout``, its dict, or the text form ``- name [x1, y1, x2, y2]`` that ``Layout.to_lines``
writes), or stop:

- stop at the plan review renders the plan once and ends the run there (no judging, no aligning);
- stop at an align review drops the new layout and ends the run with the best image so far.

Every decision is recorded in the state and in run.json (``reviews``): stage, round, action, the
reviewer's layout and its difference from what the MLLM planned. A decision that cannot be used (an
edit whose layout does not parse) is a clear error that loses nothing: the run stays paused at the
same review and can be resumed with another decision.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from mllm_guidance.errors import InputError, first_problem
from mllm_guidance.layout import Layout
from mllm_guidance.state import ReviewStage


class ReviewRequest(BaseModel):
    """What a reviewer is shown: the layout about to be rendered."""

    stage: ReviewStage = Field(description="plan: before the first render; align: before a re-render.")
    round: int = Field(description="The round the layout would render as.")
    prompt: str
    layout: Layout = Field(description="The layout the MLLM planned (or redesigned).")
    reasoning: str = Field(default="", description="The MLLM's reasoning for it.")
    preview_path: str | None = Field(default=None, description="A sketch of the boxes (PNG) in the run directory.")


#: The longest edited layout text read (the MLLM answer parser's own bound).
MAX_LAYOUT_CHARS = 65_536


class ReviewDecision(BaseModel):
    """The reviewer's answer. It validates itself (the forms ``as_decision`` takes), so it is also
    the review interrupt's ``response_schema``: LangGraph refuses a bad resume value before saving it,
    and the pause can be answered again."""

    action: Literal["approve", "edit", "stop"]
    layout: Layout | None = Field(default=None, description="The reviewer's layout (edit only): a layout object, "
                                  "or its text form, one '- name [x1, y1, x2, y2]' a line.")

    @model_validator(mode="before")
    @classmethod
    def _from_action(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value in ("approve", "stop"):
                return {"action": value}
            raise ValueError(f"a review decision is approve, stop or {{'action': 'edit', 'layout': ...}}; got {_short(value)}")
        if isinstance(value, dict) and value.get("action") not in ("approve", "edit", "stop"):
            raise ValueError(f"a review decision needs action approve, edit or stop; got {_short(value.get('action'))}")
        return value

    @field_validator("layout", mode="before")
    @classmethod
    def _readable_layout(cls, value: Any) -> Any:
        return None if value is None else as_layout(value)

    @model_validator(mode="after")
    def _edit_has_layout(self) -> ReviewDecision:
        if self.action == "edit" and self.layout is None:
            raise ValueError("an edit decision needs the layout: {'action': 'edit', 'layout': ...}")
        return self

    @classmethod
    def approve(cls) -> ReviewDecision:
        return cls(action="approve")

    @classmethod
    def edit(cls, layout: Layout | dict[str, Any] | str) -> ReviewDecision:
        return cls(action="edit", layout=as_layout(layout))

    @classmethod
    def stop(cls) -> ReviewDecision:
        return cls(action="stop")


def as_layout(value: Layout | dict[str, Any] | str) -> Layout:
    """A reviewer's layout, checked like an MLLM answer: a Layout, its dict, or its text form."""
    if isinstance(value, Layout):
        return value
    if isinstance(value, str) and len(value) > MAX_LAYOUT_CHARS:
        raise InputError(f"the edited layout is {len(value):,} characters; the most read is {MAX_LAYOUT_CHARS:,}")
    if isinstance(value, str):
        from mllm_guidance.errors import ParseError
        from mllm_guidance.prompts.parse import parse_layout

        try:
            layout = parse_layout(value)
        except ParseError as exc:
            raise InputError(f"the edited layout cannot be read: {exc}. Write one object a line: "
                             "- name [x1, y1, x2, y2] (0..1, origin top-left)") from None
    else:
        try:
            layout = Layout.model_validate(value)
        except ValidationError as exc:
            raise InputError(f"the edited layout is not a layout: {first_problem(exc)}") from None
    if layout.is_empty:
        raise InputError("the edited layout has no objects; approve, stop, or give at least one box")
    return layout


def as_decision(value: Any) -> ReviewDecision:
    """A decision from what a client sent: a ReviewDecision, its dict, or just the action (one
    clear error otherwise, never the client's whole value echoed)."""
    if isinstance(value, ReviewDecision):
        return value
    if not isinstance(value, (str, dict)):
        raise InputError(f"a review decision is approve, stop or {{'action': 'edit', 'layout': ...}}; got {_short(value)}")
    try:
        return ReviewDecision.model_validate(value)
    except ValidationError as exc:
        raise InputError(decision_error(exc)) from None


def decision_error(exc: ValidationError) -> str:
    """A refused decision's first problem, in one short line."""
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    message = str(first.get("msg", "")).removeprefix("Value error, ")
    return message if not where or where == "layout" else f"{where}: {message}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
