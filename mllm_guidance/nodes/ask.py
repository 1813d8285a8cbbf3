"""The skeleton every MLLM node shares: build the request, ask, read the answer, decide, report.

``ask`` calls the model, reads the answer with its step's reader and, when the answer cannot be
used, asks again with the parse error fed back (``parse_retries`` times); every call is logged in
the run's call log. A bad answer is not an exception for the run: the step ends with no value and
its error, and the node decides how the run goes on (the failure is recorded). Failures of the
model itself (network, auth, quota) were already retried by the model (``backends.retry``) and
stop the run as a ``BackendError`` worded by ``errors.explain_mllm``; the run can then be resumed
from its checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.runtime import Runtime

from mllm_guidance.config import GuidanceConfig
from mllm_guidance.context import Context
from mllm_guidance.errors import BackendError, ConfigError, GuidanceError, ParseError, explain_mllm
from mllm_guidance.images import ModelImage
from mllm_guidance.prompts.parse import clean_reply, extract_reasoning
from mllm_guidance.prompts.steps import ROUND_KEY, STEP_KEY, STEPS, Step
from mllm_guidance.state import Failure, GuidanceState, ImageRef


@dataclass
class Answer:
    """The outcome of one step's calls."""

    step: str
    round: int
    value: Any = None
    reasoning: str = ""
    error: str | None = None
    attempts: int = 0
    call_ids: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    reply: str = ""

    def then(self, later: Answer) -> Answer:
        """This answer followed by another call of the same step: the later value, all the costs."""
        return Answer(step=self.step, round=self.round, value=later.value, reasoning=later.reasoning, error=later.error,
                      attempts=self.attempts + later.attempts, call_ids=self.call_ids + later.call_ids,
                      input_tokens=self.input_tokens + later.input_tokens,
                      output_tokens=self.output_tokens + later.output_tokens, seconds=self.seconds + later.seconds,
                      reply=later.reply)

    def updates(self) -> dict[str, Any]:
        """What every MLLM node adds to the state: the calls it used (their costs are in the call
        log, counted at the end), and the failure when no usable answer came."""
        out: dict[str, Any] = {"call_ids": list(self.call_ids)}
        if self.value is None:
            out["failures"] = [Failure(step=self.step, round=self.round, attempts=self.attempts, error=self.error or "")]
        return out


@dataclass
class Request:
    """What a node sends: the messages, and the image they carry (for the log and for pixel boxes)."""

    round: int
    messages: list[BaseMessage]
    image: ImageRef | None = None
    #: further images the messages carry after ``image``, in order (the pairwise judge's two)
    images: list[ImageRef] = field(default_factory=list)


class ModelNode:
    """An MLLM step as a graph node. Subclasses say what to send (``request``), what the answer
    changes (``decide``) and what to show (``event``)."""

    step: Step

    async def __call__(self, state: GuidanceState, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = runtime.context
        request = await asyncio.to_thread(self.request, state, ctx)  # reads the image file
        answer = await ask(ctx, ctx.config, self.step, request, emit=runtime.stream_writer)
        again = self.follow_up(state, ctx, request, answer)
        if again is not None:
            answer = answer.then(await ask(ctx, ctx.config, self.step, again, emit=runtime.stream_writer))
        updates = answer.updates()
        updates.update(self.decide(state, answer, ctx.config))
        await complete_round(ctx, state, updates, request)
        runtime.stream_writer({"event": "step", "step": self.step.name, "round": request.round,
                               **self.event(updates, answer)})
        return updates

    def request(self, state: GuidanceState, ctx: Context) -> Request:
        raise NotImplementedError

    def follow_up(self, state: GuidanceState, ctx: Context, request: Request, answer: Answer) -> Request | None:
        """A second request of the same step when the first answer calls for one (none by default)."""
        return None

    def decide(self, state: GuidanceState, answer: Answer, cfg: GuidanceConfig) -> dict[str, Any]:
        raise NotImplementedError

    def event(self, updates: dict[str, Any], answer: Answer) -> dict[str, Any]:
        return {}

    def image_message(self, ctx: Context, image: ImageRef) -> ModelImage:
        """The image as the MLLM gets it (``mllm_image_side``, ``mllm_image_format``)."""
        return ctx.store.image_for_model(image, ctx.settings.mllm_image_side, ctx.settings.mllm_image_format)


async def complete_round(ctx: Context, state: GuidanceState, updates: dict[str, Any], request: Request) -> None:
    """The round is done when its image file is too: wait for the image the request showed (written
    in the background since generate) and put its complete reference in the round this step
    returns, or returns now. The best round's render is held in memory (its PNG, at the end, is
    made from it when rounds are stored lossy)."""
    for shown in ([request.image] if request.image is not None else []) + request.images:
        if shown.sha256 is not None:
            continue
        done = await ctx.store.finished(shown)
        rounds = updates.setdefault("rounds", [])
        mine = [i for i, r in enumerate(rounds) if r.image.path == shown.path]
        if mine:
            rounds[mine[0]] = rounds[mine[0]].model_copy(update={"image": done})
        else:
            rounds.extend(r.model_copy(update={"image": done}) for r in state.rounds if r.image.path == shown.path)
    best = updates.get("best")
    if best is not None:
        ctx.store.hold(state.rounds[best].image)


async def ask(ctx: Context, config: GuidanceConfig, step: Step, request: Request, *, emit: Any = None) -> Answer:
    """Ask ``step`` until an answer can be used or ``parse_retries`` extra calls are spent."""
    if ctx.mllm is None:
        raise ConfigError(f"the {step.name} step needs an MLLM; give one (--mllm)")
    structured = step.name in ctx.settings.structured_steps
    model: Any = ctx.mllm
    if structured:
        try:
            model = ctx.mllm.with_structured_output(step.schema, include_raw=True)
        except NotImplementedError:
            raise ConfigError(
                f"{type(ctx.mllm).__name__} has no structured output; run {step.name} as text "
                "(drop it from structured_steps / --structured)"
            ) from None
    image = request.image
    image_size = (image.width, image.height) if image is not None else None
    history = list(request.messages)
    call_config = {
        "metadata": {STEP_KEY: step.name, ROUND_KEY: request.round},
        "tags": [f"mllm_guidance:{step.name}"],
        "run_name": f"mllm_guidance.{step.name}",
    }
    answer = Answer(step=step.name, round=request.round)
    for attempt in range(config.parse_retries + 1):
        answer.attempts = attempt + 1
        started = time.perf_counter()
        try:
            out = await model.ainvoke(history, config=call_config)
        except GuidanceError:
            raise
        except Exception as exc:
            raise BackendError(f"{step.name} (round {request.round}): {explain_mllm(exc, ctx.mllm)}") from exc
        seconds = time.perf_counter() - started
        raw: AIMessage = out["raw"] if structured else out
        text = message_text(raw)
        tool_calls = [{"name": tc["name"], "args": tc["args"]} for tc in getattr(raw, "tool_calls", [])]
        usage = getattr(raw, "usage_metadata", None) or {}
        error = None
        try:
            if structured:
                if out.get("parsing_error") is not None or out.get("parsed") is None:
                    raise step.error(f"the structured answer did not fit the schema: {out.get('parsing_error')}")
                value = step.read_structured(out["parsed"], image_size)
                reasoning = str(getattr(out["parsed"], "reasoning", ""))
            else:
                value = step.read_text(text, image_size)
                reasoning = extract_reasoning(text)
        except ParseError as exc:
            value, reasoning, error = None, "", str(exc)
        call_id = await asyncio.to_thread(ctx.store.record_call, {
            "step": step.name,
            "round": request.round,
            "attempt": attempt + 1,
            "structured": structured,
            "request": [_message_record(m, ([image] if image is not None else []) + request.images) for m in history],
            "reply": text,
            "tool_calls": tool_calls,
            "parsed": _jsonable(value),
            "error": error,
            "input_tokens": int(usage.get("input_tokens", 0) or 0),
            "output_tokens": int(usage.get("output_tokens", 0) or 0),
            "seconds": round(seconds, 4),
        })
        answer.call_ids.append(call_id)
        answer.input_tokens += int(usage.get("input_tokens", 0) or 0)
        answer.output_tokens += int(usage.get("output_tokens", 0) or 0)
        answer.seconds += seconds
        if emit:
            emit({"event": "mllm_call", "step": step.name, "round": request.round, "attempt": attempt + 1,
                  "ok": error is None, "error": error})
        answer.reply = text
        if error is None:
            answer.value, answer.reasoning, answer.error = value, reasoning, None
            return answer
        answer.error = error
        history = history + [
            AIMessage(content=clean_reply(text) or json.dumps(tool_calls)),
            HumanMessage(
                content=f"Your answer could not be used: {error}. Answer again, following the "
                "format of the examples exactly."
            ),
        ]
    return answer


def message_text(message: Any) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            b if isinstance(b, str) else str(b.get("text", "")) for b in content if isinstance(b, (str, dict))
        )
    return str(content)


def _message_record(message: BaseMessage, images: list[ImageRef]) -> dict[str, Any]:
    """A message as text for the log: image data replaced by references to the image files, in order."""
    content = message.content
    if isinstance(content, list):
        blocks = []
        shown = iter(images)
        for b in content:
            if isinstance(b, dict) and b.get("type") in ("image", "image_url"):
                ref = next(shown, None)
                blocks.append({"type": "image", "ref": ref.path if ref else None})
            else:
                blocks.append(b)
        content = blocks
    return {"role": message.type, "content": content}


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, str)):
        return value
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


__all__ = ["STEPS", "Answer", "ModelNode", "Request", "ask", "message_text"]
