"""Begin: a new prompt starts a new run, even on a thread that already holds a finished one.

LangGraph keeps a thread's state between invocations; without this, a second prompt on a thread
would inherit the first run's rounds and stop reason and skip straight to finish. A resumed run
never passes here (it continues from its checkpoint, not from START).
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from mllm_guidance.context import Context
from mllm_guidance.state import GuidanceState, fresh_run


async def begin(state: GuidanceState, runtime: Runtime[Context]) -> dict[str, Any]:
    """A fresh run, which knows its run directory from the start (a run paused for review and
    continued later, as the LangGraph server does, finds its directory again through it)."""
    ctx = runtime.context
    return {**fresh_run(), "run_dir": str(ctx.store.root)}
