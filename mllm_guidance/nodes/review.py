"""Review: the human-in-the-loop pause before a layout is rendered (``mllm_guidance.review``)."""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from mllm_guidance.context import Context
from mllm_guidance.draw import draw_layout
from mllm_guidance.review import ReviewDecision, ReviewRequest
from mllm_guidance.state import GuidanceState, Plan, Review


async def review(state: GuidanceState, runtime: Runtime[Context]) -> dict[str, Any]:
    ctx = runtime.context
    stage = "plan" if not state.rounds else "align"
    k = len(state.rounds)
    planned = state.plan.layout if state.plan is not None and state.plan.layout is not None else None
    if planned is None:  # nothing to review (plain mode never gets here)
        return {}
    preview = await asyncio.to_thread(_preview, ctx, planned, k)
    request = ReviewRequest(stage=stage, round=k, prompt=state.prompt, layout=planned,
                            reasoning=state.plan.reasoning if state.plan else "", preview_path=preview)
    runtime.stream_writer({"event": "review", "step": "review", "round": k, "stage": stage})
    # validated before LangGraph saves it: a bad decision is refused and the pause can be answered again
    decision: ReviewDecision = interrupt(request.model_dump(mode="json"), response_schema=ReviewDecision)
    record = Review(stage=stage, round=k, action=decision.action)
    updates: dict[str, Any] = {}
    if decision.action == "edit":
        record.layout = decision.layout
        record.change = planned.diff(decision.layout).summary()
        updates["plan"] = Plan(layout=decision.layout, source="human",
                               reasoning=f"edited by the reviewer ({record.change})")
    elif decision.action == "stop":
        updates["stop_reason"] = "review_stopped"
    updates["reviews"] = [record]
    runtime.stream_writer({"event": "step", "step": "review", "round": k, "action": decision.action,
                           "change": record.change})
    return updates


def _preview(ctx: Any, layout: Any, k: int) -> str:
    from PIL import Image

    size = ctx.generator.default_size if hasattr(ctx.generator, "default_size") else (512, 512)
    ref = ctx.store.save_image(draw_layout(Image.new("RGB", tuple(size), "white"), layout, filled=True),
                               f"review-{k}.png")
    return str(ctx.store.path(ref.path))
