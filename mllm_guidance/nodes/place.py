"""Place: the MLLM turns the prompt into a first layout, O_0 = place(C)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from mllm_guidance.config import Context, GuidanceConfig, resolve_context
from mllm_guidance.errors import LayoutParseError
from mllm_guidance.layout import Layout
from mllm_guidance.nodes.ask import ask
from mllm_guidance.nodes.readers import layout_readers
from mllm_guidance.prompts.schemas import LayoutAnswer
from mllm_guidance.state import Failure, GuidanceState, Plan


class PlaceNode:
    def __init__(self, config: GuidanceConfig) -> None:
        self.config = config

    def __call__(self, state: GuidanceState, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = resolve_context(runtime)
        read_text, read_structured = layout_readers(allow_empty=False)
        answer = ask(
            ctx, self.config, step="place", round_index=0,
            messages=ctx.templates.messages("place", state.prompt),
            read_text=read_text, read_structured=read_structured,
            schema=LayoutAnswer, error_type=LayoutParseError, emit=runtime.stream_writer,
        )
        updates = answer.state_updates(state, "place")
        if answer.value is None:
            # Nothing to keep: render without grounding and let align (if any) recover.
            updates["failures"] = state.failures + [
                Failure(step="place", round=0, attempts=answer.attempts, error=answer.error or "")
            ]
            updates["plan"] = Plan(layout=Layout(), source="place", reasoning="(no usable layout)")
            updates["correct_done"] = True
        else:
            updates["plan"] = Plan(layout=answer.value, source="place", reasoning=answer.reasoning)
            updates["correct_done"] = not self.config.corrects or self.config.max_correct_rounds == 0
        runtime.stream_writer({"event": "step", "step": "place", "round": 0, "objects": len(updates["plan"].layout)})
        return updates
