"""The knobs a client may turn per run, declared once for every face.

A client of the LangGraph server (``configurable``), the MCP tool, the LangChain tool, the studio's
controls and the command line all set the same method knobs under the same names, with bounds taken
from ``GuidanceConfig``'s own fields (the single source of types, limits and help). An operator may
narrow them (``KnobLimits``: the largest K, candidate count and image side, the modes and which
knobs clients may set at all); each face asks ``knob_model(limits)`` for its schema and
``to_config`` turns a client's values into config fields. Adding a knob is one row in ``KNOBS``.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from mllm_guidance.config import GOOD_MAX, GOOD_MIN, MODES, GuidanceConfig

#: Client name -> the GuidanceConfig field it sets. Names are the short ones clients already know
#: (``max_rounds`` is the thesis's K, the CLI's ``-k/--max-rounds``).
KNOBS: dict[str, str] = {
    "mode": "mode",
    "max_rounds": "max_align_rounds",
    "correct_rounds": "max_correct_rounds",
    "is_good": "is_good",
    "seed": "seed",
    "width": "width",
    "height": "height",
    "review": "review",
    "repair": "repair",
    "candidates": "candidates",
    "verifier": "verifier",
    "judge_mode": "judge_mode",
}
#: Knobs that pause a run for a person: a face with nobody to answer the pause leaves them out.
PAUSING = frozenset({"review"})


class KnobLimits(BaseModel):
    """How far an operator lets clients go (never past the config's own bounds)."""

    model_config = ConfigDict(frozen=True)

    max_rounds: int = Field(default=20, ge=0, le=50, description="The largest K (and self-correct rounds) a client may ask for.")
    max_candidates: int = Field(default=4, ge=1, le=16, description="The most candidates per render a client may ask for.")
    max_side: int = Field(default=2048, ge=64, le=4096, description="The largest image width or height a client may ask for.")
    modes: tuple[str, ...] = Field(default=MODES, description="The modes a client may pick.")
    client_knobs: tuple[str, ...] = Field(default=tuple(KNOBS), description="The knobs clients may set at all.")

    @model_validator(mode="after")
    def _known(self) -> KnobLimits:
        unknown = set(self.modes) - set(MODES) or set(self.client_knobs) - set(KNOBS)
        if unknown:
            raise ValueError(f"unknown {sorted(unknown)}: modes are {list(MODES)}, knobs are {list(KNOBS)}")
        return self


#: The config's own bounds: what the command line (whose user is its operator) allows.
UNLIMITED = KnobLimits(max_rounds=50, max_candidates=16, max_side=4096)


def _field(knob: str, limits: KnobLimits) -> tuple[Any, Any]:
    """The knob's (annotation, FieldInfo): the config field's type and help, optional, narrowed."""
    source = GuidanceConfig.model_fields[KNOBS[knob]]
    annotation: Any = source.annotation
    metadata = [m for m in source.metadata if not isinstance(m, (annotated_types.Le, annotated_types.Lt))]
    upper = {"max_rounds": limits.max_rounds, "correct_rounds": limits.max_rounds, "candidates": limits.max_candidates,
             "width": limits.max_side, "height": limits.max_side}.get(knob)
    if knob == "is_good":  # the config also takes a callable; a client sends a score threshold
        annotation, metadata = int, [annotated_types.Ge(GOOD_MIN), annotated_types.Le(GOOD_MAX)]
    elif knob == "mode":
        annotation = Literal[tuple(m for m in MODES if m in limits.modes)]  # type: ignore[misc]
    elif upper is not None:
        metadata.append(annotated_types.Le(upper))
    else:
        metadata += [m for m in source.metadata if isinstance(m, (annotated_types.Le, annotated_types.Lt))]
    annotation = _without_none(annotation)
    described = source.description or ""
    if metadata:
        annotation = typing.Annotated[annotation, *metadata]
    return annotation | None, Field(default=None, description=described)


def _without_none(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


@functools.lru_cache(maxsize=64)
def knob_model(limits: KnobLimits = UNLIMITED, exclude: frozenset[str] = frozenset()) -> type[BaseModel]:
    """The pydantic model of what a client may set under ``limits`` (less ``exclude``: knobs the
    face cannot honour, such as review where nobody answers a pause). Unknown keys are refused."""
    names = [k for k in KNOBS if k in limits.client_knobs and k not in exclude]
    fields = {name: _field(name, limits) for name in names}
    return create_model("ClientKnobs", __config__=ConfigDict(extra="forbid"), **fields)  # type: ignore[call-overload]


def to_config(values: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """A client's knob values as GuidanceConfig fields (unset knobs left out)."""
    given = values.model_dump(exclude_none=True) if isinstance(values, BaseModel) else {
        k: v for k, v in values.items() if v is not None}
    return {KNOBS[name]: value for name, value in given.items()}


def bounds(model: type[BaseModel]) -> dict[str, tuple[Any, Any, tuple[Any, ...] | None]]:
    """(minimum, maximum, choices) of each knob as its JSON schema states them: how the tests compare faces."""
    return {name: schema_bounds(prop) for name, prop in model.model_json_schema()["properties"].items()}


def schema_bounds(prop: dict[str, Any]) -> tuple[Any, Any, tuple[Any, ...] | None]:
    """(minimum, maximum, choices) of one JSON-schema property (``anyOf`` with null unwrapped)."""
    options = [p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
    part = options[0] if options else prop
    low = part.get("minimum", part.get("exclusiveMinimum"))
    high = part.get("maximum")
    if high is None and "exclusiveMaximum" in part:
        high = part["exclusiveMaximum"] - 1
    choices = tuple(part["enum"]) if "enum" in part else None
    return low, high, choices
