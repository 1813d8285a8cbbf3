"""The graph's progress events (its ``custom`` stream) as one line of text, for faces that show
them as plain text: MCP progress and log messages, the studio's step log. (The command line's
renderer, ``cli/progress.py``, adds live status and colour on top of the same events.)"""

from __future__ import annotations

from typing import Any


def event_line(event: dict[str, Any]) -> str | None:
    """One line for a finished step or the end of the run; None for the events in between."""
    kind, step, k = event.get("event"), event.get("step"), event.get("round")
    if kind == "done":
        return f"done: best round {k}, score {event.get('score')}/5 (stop: {event.get('stop')})"
    if kind != "step":
        return None
    if step == "reason":
        return f"round {k}: scored {event.get('score')}/5"
    if step == "generate":
        return f"round {k}: image rendered"
    if step == "review":
        change = f": {event['change']}" if event.get("change") else ""
        return f"round {k}: reviewed ({event.get('action')}{change})"
    if step == "align":
        return f"round {k}: align redesigned the layout"
    return f"{str(step).replace('_', '-')} (round {k}) done"
