"""Reason: the MLLM judges the latest image, R_k = reason(C, I_k), and the best image is tracked.

Best-of rule (thesis Table 6.1): a good image ends the loop and is the output; otherwise an image
becomes the best only with a strictly higher score, so ties keep the EARLIER round (fewer
changes from the planned layout, and no evidence that the later one is better). An unreadable
score counts as the worst (below 1), so it never displaces a scored image.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from mllm_guidance.config import Context, GuidanceConfig, resolve_context
from mllm_guidance.errors import ScoreParseError
from mllm_guidance.nodes.ask import ask
from mllm_guidance.nodes.readers import score_readers
from mllm_guidance.prompts.schemas import ScoreAnswer
from mllm_guidance.state import Failure, GuidanceState


def rank(score: int | None) -> int:
    return 0 if score is None else score


class ReasonNode:
    def __init__(self, config: GuidanceConfig) -> None:
        self.config = config

    def __call__(self, state: GuidanceState, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx, cfg = resolve_context(runtime), self.config
        current = state.rounds[-1]
        read_text, read_structured = score_readers()
        answer = ask(
            ctx, cfg, step="reason", round_index=current.index,
            messages=ctx.templates.messages("reason", state.prompt, image_png=ctx.store.image_for_model(current.image, cfg.mllm_image_side)),
            read_text=read_text, read_structured=read_structured,
            schema=ScoreAnswer, error_type=ScoreParseError, image=current.image, emit=runtime.stream_writer,
        )
        updates = answer.state_updates(state, "reason")
        score = answer.value
        good = score is not None and cfg.good(score, answer.reasoning)
        judged = current.model_copy(update={"reasoning": answer.reasoning, "score": score, "good": good})
        updates["rounds"] = state.rounds[:-1] + [judged]
        best = state.best
        if good or best is None or rank(score) > rank(state.rounds[best].score):
            updates["best"] = current.index
        if good:
            updates["stop_reason"] = "good"
        elif state.align_rounds >= cfg.max_align_rounds:
            updates["stop_reason"] = "max_rounds"
        if score is None:
            updates["failures"] = state.failures + [
                Failure(step="reason", round=current.index, attempts=answer.attempts, error=answer.error or "")
            ]
        runtime.stream_writer({"event": "step", "step": "reason", "round": current.index, "score": score, "good": good})
        return updates
