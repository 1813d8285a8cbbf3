"""Finish: pick the output image (I_best) and make final.png of it (a hard link to its PNG).

Round images no step read (modes without a judge) are still being written: finish waits for them
and completes their references. It also counts what the run used (``state.tally_usage``: the calls
of the log that the run's steps used, and the rounds' renders), once, instead of every node
writing its share into every checkpoint.

Writing the evidence (run.json, report.html) is not a node's job: the run layer does it after the
graph (``run.py``), for every face.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from mllm_guidance.context import Context
from mllm_guidance.state import GuidanceState, tally_usage


class FinishNode:
    async def __call__(self, state: GuidanceState, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = runtime.context
        # Scored runs keep the tracked best; unscored modes output their last image.
        best = state.best if state.best is not None else len(state.rounds) - 1
        completed = [r.model_copy(update={"image": await ctx.store.finished(r.image)})
                     for r in state.rounds if r.image.sha256 is None]
        image = next((r.image for r in completed if r.index == best), state.rounds[best].image)
        used = set(state.call_ids)
        calls = [c for c in await asyncio.to_thread(ctx.store.calls) if c.get("id") in used]
        final = await asyncio.to_thread(ctx.store.final_image, image, "final.png")
        updates: dict[str, Any] = {"best": best, "final_image": final, "stop_reason": state.stop_reason or "done",
                                   "run_dir": str(ctx.store.root)}
        if completed:
            updates["rounds"] = completed
        updates["usage"] = Overwrite(tally_usage(calls, state.rounds))
        runtime.stream_writer({
            "event": "done", "step": "finish", "round": best,
            "score": state.rounds[best].score, "stop": updates["stop_reason"],
        })
        return updates
