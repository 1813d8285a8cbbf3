"""SQLite checkpoints for resuming a crashed or interrupted run.

The serializer is given an explicit allow-list of the state's own model classes: LangGraph warns
about (and will soon refuse) reviving classes it was not told about.

Secrets never reach a checkpoint: the serializer masks every string of what it stores
(``redact.redact``) before encoding it. It is the one door every checkpoint and every pending
write passes through (state values, the run's input, the errors LangGraph records), so no node has
to remember to mask its text and a state field added later is covered without a change here. The
cost is that a resumed run sees ``***`` where the secret was, which is what a secret in a prompt or
an answer should become anyway; a run that holds no secret is stored byte for byte as before.
(The checkpoint metadata is not encoded by the serializer; ``Run.run_config`` masks it.)
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mllm_guidance.redact import redact
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


class RedactingSerializer:
    """LangGraph's serializer, given only values with their secrets masked."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        return self.inner.dumps_typed(redact(obj))

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        return self.inner.loads_typed(data)


def serializer() -> RedactingSerializer:
    """The checkpoint serializer: the state's classes allowed, secrets masked."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    allowed = sorted((c.__module__, c.__name__) for c in state_classes())
    return RedactingSerializer(JsonPlusSerializer(allowed_msgpack_modules=allowed))


async def async_sqlite_saver(path: str | Path, before_write: Callable[[], Awaitable[None]] | None = None) -> Any:
    """The run's SQLite saver.

    ``before_write`` is awaited before anything is stored (the store's ``flush``): a checkpoint that
    names an image file is stored only once the file is on disk. LangGraph stores checkpoints
    while the next step runs, so this wait is off the critical path.

    Channel versions are plain integers (LangGraph's default) instead of the SQLite saver's
    52-character strings: a checkpoint lists every channel's version and what each node has seen,
    which took two thirds of its bytes. A file written with string versions (an older run being
    resumed) keeps them, since the two kinds cannot be compared."""
    import aiosqlite
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    class RunSaver(AsyncSqliteSaver):
        string_versions = False

        def get_next_version(self, current: Any, channel: None = None) -> Any:
            if self.string_versions or isinstance(current, str):
                return super().get_next_version(current, channel)
            return 1 if current is None else int(current) + 1

        async def aput(self, *args: Any, **kwargs: Any) -> Any:
            if before_write is not None:
                await before_write()
            return await super().aput(*args, **kwargs)

        async def aput_writes(self, *args: Any, **kwargs: Any) -> None:
            if before_write is not None:
                await before_write()
            return await super().aput_writes(*args, **kwargs)

    conn = await aiosqlite.connect(str(path))
    # the saver turns on WAL; with WAL, NORMAL syncs at checkpoints of the log instead of at every
    # commit: a crashed or killed process loses nothing, a power cut at most the last steps
    await conn.execute("PRAGMA synchronous=NORMAL")
    saver = RunSaver(conn, serde=serializer())
    saver.string_versions = await _written_with_string_versions(conn, saver.serde)
    return saver


async def _written_with_string_versions(conn: Any, serde: Any) -> bool:
    import sqlite3

    try:
        async with conn.execute("SELECT type, checkpoint FROM checkpoints ORDER BY rowid DESC LIMIT 1") as cursor:
            row = await cursor.fetchone()
    except sqlite3.OperationalError:  # no table yet: a new file
        return False
    if row is None:
        return False
    versions = serde.loads_typed((row[0], row[1])).get("channel_versions", {})
    return any(isinstance(v, str) for v in versions.values())


def stored_checkpoints(path: str | Path) -> int:
    """How many checkpoints the file holds (0 when it is missing, empty or unreadable): a run
    directory whose checkpoint file holds none can be started again in place."""
    import sqlite3
    from contextlib import closing

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return 0
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0])
    except sqlite3.Error:
        return 0
