"""Finish: pick the output image (I_best) and copy it to final.png.

Writing the evidence (run.json, report.html) is not a node's job: the run layer does it after the
graph (``run.py``), for every face.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime

from mllm_guidance.context import Context
from mllm_guidance.state import GuidanceState


class FinishNode:
    async def __call__(self, state: GuidanceState, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = runtime.context
        # Scored runs keep the tracked best; unscored modes output their last image.
        best = state.best if state.best is not None else len(state.rounds) - 1
        final = await asyncio.to_thread(ctx.store.copy_image, state.rounds[best].image, "final.png")
        updates = {"best": best, "final_image": final, "stop_reason": state.stop_reason or "done", "run_dir": str(ctx.store.root)}
        runtime.stream_writer({
            "event": "done", "step": "finish", "round": best,
            "score": state.rounds[best].score, "stop": updates["stop_reason"],
        })
        return updates
