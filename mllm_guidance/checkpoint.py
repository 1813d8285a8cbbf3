"""SQLite checkpoints for resuming a crashed or interrupted run.

The serializer is given an explicit allow-list of the state's own model classes: LangGraph warns
about (and will soon refuse) reviving classes it was not told about.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mllm_guidance.state import GuidanceState


def state_classes(model: type[BaseModel] = GuidanceState) -> set[type[BaseModel]]:
    """Every pydantic model class reachable from the state's fields."""
    found: set[type[BaseModel]] = set()

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp in found:
                return
            found.add(tp)
            for f in tp.model_fields.values():
                visit(f.annotation)
        for arg in typing.get_args(tp):
            visit(arg)

    visit(model)
    return found


def _serde() -> Any:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    allowed = sorted((c.__module__, c.__name__) for c in state_classes())
    return JsonPlusSerializer(allowed_msgpack_modules=allowed)


async def async_sqlite_saver(path: str | Path) -> Any:
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    conn = await aiosqlite.connect(str(path))
    return AsyncSqliteSaver(conn, serde=_serde())
