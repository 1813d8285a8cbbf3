"""Align: the MLLM looks at the latest image and redesigns the layout, O_{k+1} = align(C, I_k).

What align sees (``align_context``): Table 6.1 writes align(C, I), but the thesis's prose says
three times that align acts on the result of the reasoning step, and its align examples return
boxes of the previous layout, which a model can only do if it has seen them. So by default align
also gets the judge's score and reasoning and the layout the image was drawn from
(``reasoning+layout``); ``image`` is the table as written.

An empty answer means the MLLM finds that the image already matches. In ``align`` mode (no judge)
that ends the loop ("aligned"). In ``full`` mode the judge has just said the image is not good, so
an empty answer contradicts it: by default align is asked once more with the score and reasoning
(``align_empty="reask"``); if it stays empty, or with ``stop``, the loop ends with "align_empty".
Rendering a layout that did not change, with the same seed, would repeat the same image, so that
ends the loop too ("align_unchanged"); so does an unreadable answer under the same-seed policy
(with seed increments, the last good layout is rendered again with the new seed).
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage

from mllm_guidance.config import GuidanceConfig
from mllm_guidance.context import Context
from mllm_guidance.nodes.ask import Answer, ModelNode, Request
from mllm_guidance.prompts.parse import clean_reply
from mllm_guidance.prompts.steps import STEPS
from mllm_guidance.state import GuidanceState, Plan, Round


class AlignNode(ModelNode):
    step = STEPS["align"]

    def request(self, state: GuidanceState, ctx: Context) -> Request:
        cfg, current = ctx.config, state.rounds[-1]
        extra: dict[str, dict[str, str]] = {}
        if cfg.align_context != "image" and current.score is not None:
            extra["evaluation"] = self._evaluation(current)
        if cfg.align_context == "reasoning+layout" and current.layout is not None and not current.layout.is_empty:
            extra["layout"] = {"objects": current.layout.to_lines()}
        messages = ctx.templates.messages("align", state.prompt, image=self.image_message(ctx, current.image),
                                          mode=cfg.mode, extra=extra)
        return Request(round=current.index, messages=messages, image=current.image)

    def follow_up(self, state: GuidanceState, ctx: Context, request: Request, answer: Answer) -> Request | None:
        current = state.rounds[-1]
        contradicts_judge = current.score is not None and not current.good
        if not (answer.value is not None and answer.value.is_empty and contradicts_judge
                and ctx.config.align_empty == "reask"):
            return None
        again = ctx.templates.block("align", "empty answer", **self._evaluation(current))
        history = request.messages + [AIMessage(content=clean_reply(answer.reply)), HumanMessage(content=again)]
        return Request(round=request.round, messages=history, image=request.image)

    def decide(self, state: GuidanceState, answer: Answer, cfg: GuidanceConfig) -> dict[str, Any]:
        current, proposal = state.rounds[-1], answer.value
        updates: dict[str, Any] = {"align_rounds": state.align_rounds + 1}
        same_seed = cfg.seed_policy == "same"
        if proposal is None:
            if same_seed:
                updates["stop_reason"] = "align_failed"
            else:
                updates["plan"] = Plan(layout=current.layout, source="align",
                                       reasoning="(unreadable answer: kept the last layout)")
        elif proposal.is_empty:
            judged_not_good = current.score is not None and not current.good
            updates["stop_reason"] = "align_empty" if judged_not_good else "aligned"
        elif same_seed and current.layout is not None and proposal.same_as(current.layout, cfg.layout_tolerance):
            updates["stop_reason"] = "align_unchanged"
        else:
            updates["plan"] = Plan(layout=proposal, source="align", reasoning=answer.reasoning)
        return updates

    def event(self, updates: dict[str, Any], answer: Answer) -> dict[str, Any]:
        return {"objects": None if answer.value is None else len(answer.value), "stop": updates.get("stop_reason")}

    @staticmethod
    def _evaluation(current: Round) -> dict[str, str]:
        return {"score": "?" if current.score is None else str(current.score),
                "reasoning": current.reasoning or "(no reasoning given)"}
