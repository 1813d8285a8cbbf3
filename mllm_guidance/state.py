"""Everything that flows through the graph, and so everything a checkpoint stores.

State holds references to images (path, hash, size), never their bytes: a checkpoint is written
after every step, and an image in state would be stored again in each one. Full MLLM requests and
replies live in the run directory's call log; state keeps only their ids.

The lists that grow with the run (rounds, corrections, failures, call ids) are LangGraph delta
channels: a node returns just the items it adds (or, for rounds, the round it adds or judges), and
a checkpoint stores only those items, not the whole list again, so a run's checkpoint file grows
linearly with its rounds (``benchmarks/checkpoint_size.py``). The usage counters are written once,
by finish (``tally_usage``), not by every step into every checkpoint. ``fresh_run`` is the update
that resets all of them when a new prompt starts on a thread that already holds a finished run.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from langgraph.channels.delta import DeltaChannel
from langgraph.types import Overwrite
from pydantic import BaseModel, Field, field_validator

from mllm_guidance.layout import Layout

#: Longest prompt accepted; text-to-image prompts are a sentence or two, not documents.
MAX_PROMPT_CHARS = 2000


def check_prompt(prompt: object) -> str:
    """The prompt with spacing normalized, or ``ValueError`` saying why it cannot be used."""
    if not isinstance(prompt, str):
        raise ValueError(f"the prompt must be text, got {type(prompt).__name__}")
    cleaned = " ".join("".join(ch if ch.isprintable() else " " for ch in prompt).split())
    if not cleaned:
        raise ValueError("the prompt is empty; describe the image you want")
    if len(cleaned) > MAX_PROMPT_CHARS:
        raise ValueError(
            f"the prompt has {len(cleaned)} characters; the limit is {MAX_PROMPT_CHARS} "
            "(describe one image in a sentence or two)"
        )
    if not any(ch.isalpha() for ch in cleaned):
        raise ValueError("the prompt has no words; describe the image you want")
    return cleaned


class ImageRef(BaseModel):
    """An image file in the run directory (PNG; rounds may be WebP or JPEG: ``round_format``)."""

    path: str = Field(description="Path relative to the run directory.")
    sha256: str | None = Field(description="SHA-256 of the file; None while the file is being written in the "
                               "background (the step that reads the image, or finish, fills it in).")
    width: int
    height: int
    bytes: int | None = Field(description="Size of the file; None while it is being written.")


class Plan(BaseModel):
    """The layout the next generation will render, and which step produced it."""

    layout: Layout | None = Field(description="None renders without grounding (plain mode).")
    source: str = Field(description="place, self_correct, align, or none.")
    reasoning: str = ""


class Correction(BaseModel):
    """One self-correct round: the layout it was given and what it answered."""

    index: int
    before: Layout
    after: Layout | None = Field(description="None when the answer could not be parsed.")
    reasoning: str = ""
    changed: bool = False
    diff: str = ""


class RepairRecord(BaseModel):
    """Whether a round repaired an earlier image instead of rendering anew, and its mask."""

    repaired: bool
    base_round: int | None = Field(default=None, description="The round whose image was repaired.")
    boxes: list[list[float]] = Field(default=[], description="The mask: union of these normalized boxes (dilated).")
    share: float = Field(default=0.0, description="Share of the image the mask covers.")
    changed: list[str] = Field(default=[], description="The changed objects, e.g. 'moved: a cat'.")
    reason: str = Field(default="", description="Why the round rendered anew instead (empty when repaired).")


class Candidate(BaseModel):
    """One of a render's N images, with the verifier's score."""

    seed: int
    image: ImageRef
    score: float | None = None
    chosen: bool = False


class Round(BaseModel):
    """One generated image with the layout behind it and the MLLM's verdict on it."""

    index: int
    layout: Layout | None
    layout_source: str
    layout_reasoning: str = ""
    layout_warnings: list[str] = []
    seed: int
    image: ImageRef
    generator_notes: list[str] = Field(default=[], description="What the generator changed or dropped.")
    seconds: float = 0.0
    reasoning: str | None = None
    score: int | None = Field(default=None, description="1..5; None when not judged or unreadable.")
    good: bool | None = None
    repair: RepairRecord | None = Field(default=None, description="Set when repair is on, from the second round.")
    candidates: list[Candidate] = Field(default=[], description="Every candidate image and its verifier score (N > 1).")
    verifier: str | None = Field(default=None, description="The verifier that picked among the candidates.")
    comparison: str | None = Field(default=None, description="Pairwise judging: the MLLM's comparison with the best so far.")
    cost_usd: float | None = Field(default=None, description="What a hosted generator billed for this round's renders.")


class Failure(BaseModel):
    """A step whose answer stayed unusable after every retry; the run went on without it."""

    step: str
    round: int
    attempts: int
    error: str


class StepUsage(BaseModel):
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0


class Usage(BaseModel):
    """Call counts, tokens and time, per MLLM step and for the generator."""

    mllm: dict[str, StepUsage] = {}
    generator_calls: int = 0
    generator_seconds: float = 0.0
    generator_cost_usd: float = 0.0

    @property
    def mllm_calls(self) -> int:
        return sum(s.calls for s in self.mllm.values())

    @property
    def input_tokens(self) -> int:
        return sum(s.input_tokens for s in self.mllm.values())

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.mllm.values())

    def add_mllm(self, step: str, calls: int, input_tokens: int, output_tokens: int, seconds: float) -> Usage:
        current = self.mllm.get(step, StepUsage())
        updated = StepUsage(
            calls=current.calls + calls,
            input_tokens=current.input_tokens + input_tokens,
            output_tokens=current.output_tokens + output_tokens,
            seconds=current.seconds + seconds,
        )
        return self.model_copy(update={"mllm": {**self.mllm, step: updated}})

    def add_generation(self, seconds: float, renders: int = 1, cost_usd: float | None = None) -> Usage:
        """``renders`` images (candidates count one each) that took ``seconds`` together and cost
        ``cost_usd`` where a hosted API bills them."""
        return self.model_copy(
            update={
                "generator_calls": self.generator_calls + renders,
                "generator_seconds": self.generator_seconds + seconds,
                "generator_cost_usd": self.generator_cost_usd + (cost_usd or 0.0),
            }
        )

    def __add__(self, other: Usage | dict[str, Any]) -> Usage:
        if isinstance(other, dict):  # replayed by a server's serializer as plain data
            other = Usage.model_validate(other)
        total = self
        for step, u in other.mllm.items():
            total = total.add_mllm(step, u.calls, u.input_tokens, u.output_tokens, u.seconds)
        return total.model_copy(update={
            "generator_calls": total.generator_calls + other.generator_calls,
            "generator_seconds": total.generator_seconds + other.generator_seconds,
            "generator_cost_usd": total.generator_cost_usd + other.generator_cost_usd,
        })

    def __radd__(self, other: dict[str, Any]) -> Usage:
        return Usage.model_validate(other) + self


def tally_usage(calls: Sequence[dict[str, Any]], rounds: Sequence[Round]) -> Usage:
    """What a run used, counted once at its end: its MLLM calls (records of the call log) and its
    renders (the rounds, each with its candidates). Nodes do not write usage into state: it would
    be stored again in every checkpoint."""
    usage = Usage()
    for call in calls:
        usage = usage.add_mllm(str(call.get("step")), 1, int(call.get("input_tokens") or 0),
                               int(call.get("output_tokens") or 0), float(call.get("seconds") or 0.0))
    for r in rounds:
        usage = usage.add_generation(r.seconds, renders=max(1, len(r.candidates)), cost_usd=r.cost_usd)
    return usage


ReviewStage = Literal["plan", "align"]


class Review(BaseModel):
    """One human review decision as the run records it (``mllm_guidance.review``)."""

    stage: ReviewStage
    round: int
    action: Literal["approve", "edit", "stop"]
    layout: Layout | None = Field(default=None, description="The reviewer's layout (edit only).")
    change: str = Field(default="", description="The edit against what the MLLM planned, in one line.")



def put_rounds(rounds: list[Round], writes: Sequence[list[Round]]) -> list[Round]:
    """Rounds by their index: a round with a new index is added, one with a known index (judged
    by reason) replaces it. Replaying writes in any batching gives the same list."""
    out = list(rounds)
    for batch in writes:
        for r in batch:
            r = r if isinstance(r, Round) else Round.model_validate(r)  # replayed by a server's serializer
            if r.index < len(out):
                out[r.index] = r
            elif r.index == len(out):
                out.append(r)
            else:
                raise ValueError(f"round {r.index} written before round {len(out)}")
    return out


def extend(items: list[Any], writes: Sequence[list[Any]]) -> list[Any]:
    """Every write's items appended, in order."""
    out = list(items)
    for batch in writes:
        out.extend(batch)
    return out


class GuidanceState(BaseModel):
    """The graph's state. Nodes return only the fields they change; the annotated lists and the
    usage are added to, not replaced."""

    prompt: str = Field(description="The text the image must show.")
    seed: int = Field(default=0, description="Base seed; the config's seed policy derives each round's.")
    plan: Plan | None = Field(default=None, description="The layout the next generation renders.")
    correct_rounds: int = Field(default=0, description="Self-correct calls made so far.")
    correct_done: bool = Field(default=False, description="True once the layout stopped changing or the limit was hit.")
    corrections: Annotated[list[Correction], DeltaChannel(extend)] = Field(default=[], description="Every self-correct round.")
    align_rounds: int = Field(default=0, description="Align calls made so far.")
    rounds: Annotated[list[Round], DeltaChannel(put_rounds)] = Field(
        default=[], description="Every rendered image with its layout and verdict (a node returns the round it adds or judges)."
    )
    best: int | None = Field(default=None, description="Index of the best round so far.")
    stop_reason: str | None = Field(default=None, description="Set when the loop must end: good, max_rounds, aligned, ...")
    final_image: ImageRef | None = Field(default=None, description="The output image (a copy of the best round's).")
    run_dir: str | None = Field(default=None, description="The run directory the image paths are relative to (set at the end).")
    failures: Annotated[list[Failure], DeltaChannel(extend)] = Field(default=[], description="Steps whose answers stayed unreadable.")
    usage: Annotated[Usage, operator.add] = Field(default=Usage(), description="MLLM and generator calls, tokens, time "
                                                  "(counted by finish from the call log and the rounds: ``tally_usage``).")
    reviews: Annotated[list[Review], DeltaChannel(extend)] = Field(
        default=[], description="Human review decisions, in order."
    )
    call_ids: Annotated[list[str], DeltaChannel(extend)] = Field(
        default=[], description="Ids of the MLLM calls whose answers this run used, in order."
    )

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        return check_prompt(value)


def fresh_run() -> dict[str, Any]:
    """The update that clears everything a previous run on the same thread left, except the
    prompt and seed just given: a thread remembers nothing across runs but its checkpoint history."""
    reset: dict[str, Any] = {}
    for name, field in GuidanceState.model_fields.items():
        if name in ("prompt", "seed"):
            continue
        default = field.get_default(call_default_factory=True)
        reset[name] = Overwrite(default) if field.metadata else default
    return reset
