"""One writer per benchmark output directory.

Two ``bench`` processes on one ``--out`` would each run every pending item and remove each other's
run directories in flight. The runner therefore holds an exclusive lock on ``<out>/.lock`` for as
long as it writes there; a second process fails at once, naming the holder (pid, host, start time)
from the lock file. The lock is the operating system's (``flock``), so it is released when its
process ends in any way, kill -9 included: there is never a stale lock to delete by hand.

``flock`` is reliable on local file systems; on network file systems it depends on the server, so
shards on several machines never share one directory: each machine writes its own ``--out``, and
the shards are merged afterwards (README, "Benchmarks").
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

#: Locks this process holds, by directory: the command line holds the lock for the whole command
#: (run, score, summarize) and the runner takes it again inside; a second flock by the same
#: process on another descriptor would refuse itself.
_held: dict[Path, int] = {}
_guard = threading.Lock()


@contextmanager
def exclusive(out: str | Path) -> Iterator[Path]:
    """Hold the output directory's lock (re-entrant within this process), or fail at once with
    an ``InputError`` naming the process that holds it."""
    root = Path(out).resolve()
    with _guard:
        if root in _held:
            _held[root] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield root
        finally:
            with _guard:
                _held[root] -= 1
        return
    make_dirs(root)
    path = root / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise storage_error(exc, path, 0) from None
    try:
        if not _try_lock(fd, path):
            raise InputError(
                f"{root} is in use by another benchmark ({holder(path)}); wait for it to finish or give this "
                "one another --out (shards on several machines: one --out per machine, merged afterwards)"
            )
        _write_holder(fd, path)
        with _guard:
            _held[root] = 1
        try:
            yield root
        finally:
            with _guard:
                del _held[root]
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def holder(path: Path) -> str:
    """Who holds the lock, as its file says: ``pid 123 on host-a since 2025-...``."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']} since {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not said who it is yet"


def _write_holder(fd: int, path: Path) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    data = (json.dumps(info) + "\n").encode()
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
    except OSError as exc:
        raise storage_error(exc, path, len(data)) from None


def _try_lock(fd: int, path: Path) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:  # ENOLCK: a file system without locks (some network mounts)
        raise StorageError(f"cannot lock {path}: {exc.strerror}; use an --out on a local disk") from None
