"""Self-correct: O_{k+1} = self_correct(C, O_k), repeated while the layout changes, at most K times.

"Changes" means ``Layout.same_as`` with the config's tolerance. An unreadable answer ends the
loop with the last good layout, as an unchanged answer would.
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.config import GuidanceConfig
from mllm_guidance.context import Context
from mllm_guidance.nodes.ask import Answer, ModelNode, Request
from mllm_guidance.prompts.steps import STEPS
from mllm_guidance.state import Correction, GuidanceState, Plan


class SelfCorrectNode(ModelNode):
    step = STEPS["self_correct"]

    def request(self, state: GuidanceState, ctx: Context) -> Request:
        assert state.plan is not None and state.plan.layout is not None, "self_correct runs after place"
        messages = ctx.templates.messages("self_correct", state.prompt, objects=state.plan.layout)
        return Request(round=state.correct_rounds, messages=messages)

    def decide(self, state: GuidanceState, answer: Answer, cfg: GuidanceConfig) -> dict[str, Any]:
        before, after, index = state.plan.layout, answer.value, state.correct_rounds  # type: ignore[union-attr]
        changed = after is not None and not after.same_as(before, cfg.layout_tolerance)
        updates: dict[str, Any] = {
            "corrections": [Correction(
                index=index, before=before, after=after, reasoning=answer.reasoning, changed=changed,
                diff=before.diff(after).summary() if after is not None else "unreadable answer",
            )],
            "correct_rounds": index + 1,
            "correct_done": not changed or index + 1 >= cfg.correct_limit,
        }
        if changed:
            updates["plan"] = Plan(layout=after, source="self_correct", reasoning=answer.reasoning)
        return updates

    def event(self, updates: dict[str, Any], answer: Answer) -> dict[str, Any]:
        return {"changed": updates["corrections"][0].changed}
