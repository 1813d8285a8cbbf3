"""Finish: pick the output image (I_best), copy it to final.png and write run.json and the report."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from mllm_guidance.config import Context, GuidanceConfig, resolve_context
from mllm_guidance.report import write_run_files
from mllm_guidance.state import GuidanceState


class FinishNode:
    def __init__(self, config: GuidanceConfig) -> None:
        self.config = config

    def __call__(self, state: GuidanceState, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = resolve_context(runtime)
        store = ctx.store
        # Scored runs keep the tracked best; unscored modes output their last image.
        best = state.best if state.best is not None else len(state.rounds) - 1
        chosen = state.rounds[best].image
        final = store.copy_image(chosen, "final.png")
        updates = {"best": best, "final_image": final, "stop_reason": state.stop_reason or "done"}
        write_run_files(store, state.model_copy(update=updates), self.config, ctx.templates)
        runtime.stream_writer({
            "event": "done", "step": "finish", "round": best,
            "score": state.rounds[best].score, "stop": updates["stop_reason"],
        })
        return updates
