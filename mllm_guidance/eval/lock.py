"""One writer per benchmark output directory.

Two ``bench`` processes on one ``--out`` would each run every pending item and remove each other's
run directories in flight. The runner therefore holds an exclusive lock on ``<out>/.lock`` for as
long as it writes there; a second process fails at once, naming the holder (pid, host, start time)
from ``<out>/.lock.holder``. The lock is ``filelock``'s, the operating system's own lock on every
platform (``flock`` on POSIX, ``LockFileEx`` on Windows), so it is released when its process ends
in any way, kill -9 included: there is never a stale lock to delete by hand.

OS locks are reliable on local file systems; on network file systems they depend on the server (a
file system without locks is refused with one line), so shards on several machines never share one
directory: each machine writes its own ``--out``, and the shards are merged afterwards (README,
"Benchmarks").
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mllm_guidance.errors import InputError, StorageError
from mllm_guidance.store import make_dirs, storage_error

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.holder"

#: Locks this process holds, by directory: the command line holds the lock for the whole command
#: (run, score, summarize) and the runner takes it again inside; a second OS lock by the same
#: process on another descriptor would refuse itself.
_held: dict[Path, int] = {}
_guard = threading.Lock()


@contextmanager
def exclusive(out: str | Path) -> Iterator[Path]:
    """Hold the output directory's lock (re-entrant within this process), or fail at once with
    an ``InputError`` naming the process that holds it."""
    from filelock import FileLock, Timeout

    root = Path(out).resolve()
    with _guard:
        reentered = root in _held
        if reentered:
            _held[root] += 1
    if reentered:
        try:
            yield root
        finally:
            with _guard:
                _held[root] -= 1
        return
    make_dirs(root)
    path, info = root / LOCK_FILE, root / HOLDER_FILE
    lock = FileLock(path, timeout=0, thread_local=False, fallback_to_soft=False, preserve_lock_file=True)
    try:
        lock.acquire()
    except Timeout:
        raise InputError(
            f"{root} is in use by another benchmark ({holder(info)}); wait for it to finish or give this "
            "one another --out (shards on several machines: one --out per machine, merged afterwards)"
        ) from None
    except OSError as exc:  # ENOLCK: a file system without locks (some network mounts); or a refused file
        raise StorageError(f"cannot lock {path}: {exc.strerror or exc}; use an --out on a local disk") from None
    try:
        _write_holder(info)
        with _guard:
            _held[root] = 1
        try:
            yield root
        finally:
            with _guard:
                del _held[root]
    finally:
        lock.release()


def holder(path: Path) -> str:
    """Who holds the lock, as its holder file says: ``pid 123 on host-a since 2025-...``."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']} since {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said who it is yet"


def _write_holder(path: Path) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    data = json.dumps(info) + "\n"
    try:
        path.write_text(data, encoding="utf-8")
    except OSError as exc:
        raise storage_error(exc, path, len(data)) from None
