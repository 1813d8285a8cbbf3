"""Reason: the MLLM judges the latest image, R_k = reason(C, I_k), and the best image is tracked.

Best-of rule (thesis Table 6.1): a good image ends the loop and is the output; otherwise an image
becomes the best only with a strictly higher score, so ties keep the EARLIER round (fewer
changes from the planned layout, and no evidence that the later one is better). An unreadable
score counts as the worst (below 1), so it never displaces a scored image.
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.config import GuidanceConfig
from mllm_guidance.context import Context
from mllm_guidance.nodes.ask import Answer, ModelNode, Request
from mllm_guidance.prompts.steps import STEPS
from mllm_guidance.state import GuidanceState


def rank(score: int | None) -> int:
    return 0 if score is None else score


class ReasonNode(ModelNode):
    step = STEPS["reason"]

    def request(self, state: GuidanceState, ctx: Context) -> Request:
        current = state.rounds[-1]
        messages = ctx.templates.messages("reason", state.prompt, image=self.image_message(ctx, current.image))
        return Request(round=current.index, messages=messages, image=current.image)

    def decide(self, state: GuidanceState, answer: Answer, cfg: GuidanceConfig) -> dict[str, Any]:
        current, score = state.rounds[-1], answer.value
        good = score is not None and cfg.good(score, answer.reasoning)
        judged = current.model_copy(update={"reasoning": answer.reasoning, "score": score, "good": good})
        updates: dict[str, Any] = {"rounds": [judged]}
        best = state.best
        if good or best is None or rank(score) > rank(state.rounds[best].score):
            updates["best"] = current.index
        if good:
            updates["stop_reason"] = "good"
        elif state.align_rounds >= cfg.max_align_rounds:
            updates["stop_reason"] = "max_rounds"
        return updates

    def event(self, updates: dict[str, Any], answer: Answer) -> dict[str, Any]:
        return {"score": answer.value, "good": updates["rounds"][-1].good}
