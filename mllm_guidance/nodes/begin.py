"""Begin: a new prompt starts a new run, even on a thread that already holds a finished one.

LangGraph keeps a thread's state between invocations; without this, a second prompt on a thread
would inherit the first run's rounds and stop reason and skip straight to finish. A resumed run
never passes here (it continues from its checkpoint, not from START).
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.state import GuidanceState, fresh_run


def begin(state: GuidanceState) -> dict[str, Any]:
    return fresh_run()
