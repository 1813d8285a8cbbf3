"""Self-correct: O_{k+1} = self_correct(C, O_k), repeated while the layout changes, at most K times.

"Changes" means ``Layout.same_as`` with the config's tolerance. An unreadable answer ends the
loop with the last good layout, as an unchanged answer would.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from mllm_guidance.config import Context, GuidanceConfig, resolve_context
from mllm_guidance.errors import LayoutParseError
from mllm_guidance.nodes.ask import ask
from mllm_guidance.nodes.readers import layout_readers
from mllm_guidance.prompts.schemas import LayoutAnswer
from mllm_guidance.state import Correction, Failure, GuidanceState, Plan


class SelfCorrectNode:
    def __init__(self, config: GuidanceConfig) -> None:
        self.config = config

    def __call__(self, state: GuidanceState, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = resolve_context(runtime)
        assert state.plan is not None and state.plan.layout is not None, "self_correct runs after place"
        before = state.plan.layout
        index = state.correct_rounds
        read_text, read_structured = layout_readers(allow_empty=False)
        answer = ask(
            ctx, self.config, step="self_correct", round_index=index,
            messages=ctx.templates.messages("self_correct", state.prompt, objects=before),
            read_text=read_text, read_structured=read_structured,
            schema=LayoutAnswer, error_type=LayoutParseError, emit=runtime.stream_writer,
        )
        updates = answer.state_updates(state, "self_correct")
        after = answer.value
        changed = after is not None and not after.same_as(before, self.config.layout_tolerance)
        updates["corrections"] = state.corrections + [
            Correction(
                index=index, before=before, after=after, reasoning=answer.reasoning,
                changed=changed, diff=before.diff(after).summary() if after is not None else "unreadable answer",
            )
        ]
        updates["correct_rounds"] = index + 1
        updates["correct_done"] = not changed or index + 1 >= self.config.max_correct_rounds
        if changed:
            updates["plan"] = Plan(layout=after, source="self_correct", reasoning=answer.reasoning)
        if answer.value is None:
            updates["failures"] = state.failures + [
                Failure(step="self_correct", round=index, attempts=answer.attempts, error=answer.error or "")
            ]
        runtime.stream_writer({"event": "step", "step": "self_correct", "round": index, "changed": changed})
        return updates
