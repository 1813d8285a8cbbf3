"""Align: the MLLM looks at the latest image and redesigns the layout, O_{k+1} = align(C, I_k).

An empty answer means the MLLM finds that the image already matches: the loop stops ("aligned").
Rendering a layout that did not change, with the same seed, would repeat the same image, so that
ends the loop too ("align_unchanged"); so does an unreadable answer under the same-seed policy
(with seed increments, the last good layout is rendered again with the new seed).
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.context import Context
from mllm_guidance.nodes.ask import Answer, ModelNode, Request
from mllm_guidance.prompts.steps import STEPS
from mllm_guidance.state import GuidanceState, Plan


class AlignNode(ModelNode):
    step = STEPS["align"]

    def request(self, state: GuidanceState, ctx: Context) -> Request:
        current = state.rounds[-1]
        messages = ctx.templates.messages("align", state.prompt, image_png=self.image_message(ctx, current.image))
        return Request(round=current.index, messages=messages, image=current.image)

    def decide(self, state: GuidanceState, answer: Answer) -> dict[str, Any]:
        cfg, current, proposal = self.config, state.rounds[-1], answer.value
        updates: dict[str, Any] = {"align_rounds": state.align_rounds + 1}
        same_seed = cfg.seed_policy == "same"
        if proposal is None:
            if same_seed:
                updates["stop_reason"] = "align_failed"
            else:
                updates["plan"] = Plan(layout=current.layout, source="align",
                                       reasoning="(unreadable answer: kept the last layout)")
        elif proposal.is_empty:
            updates["stop_reason"] = "aligned"
        elif same_seed and current.layout is not None and proposal.same_as(current.layout, cfg.layout_tolerance):
            updates["stop_reason"] = "align_unchanged"
        else:
            updates["plan"] = Plan(layout=proposal, source="align", reasoning=answer.reasoning)
        return updates

    def event(self, updates: dict[str, Any], answer: Answer) -> dict[str, Any]:
        return {"objects": None if answer.value is None else len(answer.value), "stop": updates.get("stop_reason")}
