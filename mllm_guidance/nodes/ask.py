"""One MLLM step: call, parse, retry with the parse error fed back, log every call.

A bad answer is not an exception for the run: after ``parse_retries`` extra calls the step
returns no value and its error, and the node decides how the run goes on. Errors of the model
itself (network, auth, quota) are raised as ``BackendError`` and stop the run, which can then be
resumed from its checkpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from mllm_guidance.backends.mllm import key_env_for
from mllm_guidance.backends.replay import STEP_KEY
from mllm_guidance.backends.retry import describe_target, explain
from mllm_guidance.config import Context, GuidanceConfig
from mllm_guidance.errors import BackendError, ConfigError, GuidanceError, ParseError
from mllm_guidance.prompts.parse import extract_reasoning
from mllm_guidance.state import GuidanceState, ImageRef


@dataclass
class Answer:
    """The outcome of one step's calls."""

    value: Any
    reasoning: str
    error: str | None
    attempts: int
    call_ids: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0

    def state_updates(self, state: GuidanceState, step: str) -> dict[str, Any]:
        """The usage and call-id fields every MLLM node returns."""
        return {
            "usage": state.usage.add_mllm(
                step, self.attempts, self.input_tokens, self.output_tokens, self.seconds
            ),
            "call_ids": state.call_ids + self.call_ids,
        }


def ask(
    ctx: Context,
    config: GuidanceConfig,
    *,
    step: str,
    round_index: int,
    messages: list[BaseMessage],
    read_text: Callable[[str], Any],
    read_structured: Callable[[Any], Any],
    schema: type,
    error_type: type[ParseError],
    image: ImageRef | None = None,
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> Answer:
    structured = step in config.structured_steps
    model: Any = ctx.mllm
    if structured:
        try:
            model = ctx.mllm.with_structured_output(schema, include_raw=True)
        except NotImplementedError:
            raise ConfigError(
                f"{type(ctx.mllm).__name__} has no structured output; run {step} as text "
                "(drop it from structured_steps / --structured)"
            ) from None
    history = list(messages)
    policy = config.retry_policy()
    run_config = {
        "metadata": {STEP_KEY: step, "mllm_guidance_round": round_index},
        "tags": [f"mllm_guidance:{step}"],
        "run_name": f"mllm_guidance.{step}",
    }

    def on_retry(tries: int, kind: str, exc: BaseException) -> None:
        if emit:
            emit({"event": "mllm_retry", "step": step, "round": round_index, "try": tries, "kind": kind})

    answer = Answer(value=None, reasoning="", error=None, attempts=0)
    for attempt in range(config.parse_retries + 1):
        answer.attempts = attempt + 1
        started = time.perf_counter()
        try:
            out = policy.call(lambda: model.invoke(history, config=run_config), on_retry)
        except GuidanceError:
            raise
        except Exception as exc:
            raise BackendError(
                f"{step} (round {round_index}): {explain(exc, describe_target(ctx.mllm), key_env_for(ctx.mllm))}"
            ) from exc
        seconds = time.perf_counter() - started
        raw: AIMessage = out["raw"] if structured else out
        text = message_text(raw)
        tool_calls = [{"name": tc["name"], "args": tc["args"]} for tc in getattr(raw, "tool_calls", [])]
        usage = getattr(raw, "usage_metadata", None) or {}
        error = None
        try:
            if structured:
                if out.get("parsing_error") is not None or out.get("parsed") is None:
                    raise error_type(f"the structured answer did not fit the schema: {out.get('parsing_error')}")
                value = read_structured(out["parsed"])
                reasoning = str(getattr(out["parsed"], "reasoning", ""))
            else:
                value = read_text(text)
                reasoning = extract_reasoning(text)
        except ParseError as exc:
            value, reasoning, error = None, "", str(exc)
        call_id = ctx.store.record_call(
            {
                "step": step,
                "round": round_index,
                "attempt": attempt + 1,
                "structured": structured,
                "request": [_message_record(m, image) for m in history],
                "reply": text,
                "tool_calls": tool_calls,
                "parsed": _jsonable(value),
                "error": error,
                "input_tokens": int(usage.get("input_tokens", 0) or 0),
                "output_tokens": int(usage.get("output_tokens", 0) or 0),
                "seconds": round(seconds, 4),
            }
        )
        answer.call_ids.append(call_id)
        answer.input_tokens += int(usage.get("input_tokens", 0) or 0)
        answer.output_tokens += int(usage.get("output_tokens", 0) or 0)
        answer.seconds += seconds
        if emit:
            emit({"event": "mllm_call", "step": step, "round": round_index, "attempt": attempt + 1, "ok": error is None, "error": error})
        if error is None:
            answer.value, answer.reasoning, answer.error = value, reasoning, None
            return answer
        answer.error = error
        history = history + [
            AIMessage(content=text or json.dumps(tool_calls)),
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


def _message_record(message: BaseMessage, image: ImageRef | None) -> dict[str, Any]:
    """A message as text for the log: image data replaced by a reference to the image file."""
    content = message.content
    if isinstance(content, list):
        blocks = []
        for b in content:
            if isinstance(b, dict) and b.get("type") in ("image", "image_url"):
                blocks.append({"type": "image", "ref": image.path if image else None})
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
