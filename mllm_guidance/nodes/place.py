"""Place: the MLLM turns the prompt into a first layout, O_0 = place(C)."""

from __future__ import annotations

from typing import Any

from mllm_guidance.config import GuidanceConfig
from mllm_guidance.context import Context
from mllm_guidance.layout import Layout
from mllm_guidance.nodes.ask import Answer, ModelNode, Request
from mllm_guidance.prompts.steps import STEPS
from mllm_guidance.state import GuidanceState, Plan


class PlaceNode(ModelNode):
    step = STEPS["place"]

    def request(self, state: GuidanceState, ctx: Context) -> Request:
        return Request(round=0, messages=ctx.templates.messages("place", state.prompt))

    def decide(self, state: GuidanceState, answer: Answer, cfg: GuidanceConfig) -> dict[str, Any]:
        if answer.value is None:
            # Nothing to keep: render without grounding and let align (if any) recover.
            return {"plan": Plan(layout=Layout(), source="place", reasoning="(no usable layout)"), "correct_done": True}
        return {
            "plan": Plan(layout=answer.value, source="place", reasoning=answer.reasoning),
            "correct_done": not cfg.corrects or cfg.correct_limit == 0,
        }

    def event(self, updates: dict[str, Any], answer: Answer) -> dict[str, Any]:
        return {"objects": len(updates["plan"].layout)}
