"""Reading the files users give (datasets, templates, recordings, price tables): one clear line for
each way such a file can be unusable, instead of a traceback from deep inside a parser, and never an
unbounded read (``/dev/zero``, a FIFO, a file of gigabytes).

Only regular files are read, and at most ``LIMITS[what]`` bytes: recordings and datasets 16 MiB
(a K = 50 recording is about 1 MB; RLS-300 is 30 kB), templates and price tables 1 MiB; the
studio's reads of a run.json 64 MiB and of a benchmark's results.jsonl 1 GiB.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mllm_guidance.errors import InputError

MIB = 1024 * 1024
#: The most bytes read from each kind of user file.
LIMITS = {"recording": 16 * MIB, "dataset": 16 * MIB, "template": 1 * MIB, "price table": 1 * MIB,
          "run record": 64 * MIB, "results file": 1024 * MIB}


def read_user_bytes(path: Path, what: str, limit: int | None = None) -> bytes:
    """A regular file's bytes, at most ``limit`` (default ``LIMITS[what]``), or one ``InputError``
    line: missing, a directory, a device or pipe, too large, or unreadable."""
    limit = limit if limit is not None else LIMITS.get(what, 16 * MIB)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a directory; give a file") from None
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
        raise InputError(f"cannot read {what} {path}: {getattr(exc, 'strerror', None) or 'not a usable path'}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{what} {path} is a directory; give a file")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{what} {path} is not a regular file (a device, a pipe or a socket); give a file")
        if info.st_size > limit:
            raise InputError(f"{what} {path} is {info.st_size:,} bytes; the most read is {limit:,}")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 * MIB, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # a file that grew, or one whose size the system does not report
            raise InputError(f"{what} {path} is over {limit:,} bytes, the most read")
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_user_text(path: Path, what: str, limit: int | None = None) -> str:
    """A text file a user gave (a dataset, a template, a recording), bounded as ``read_user_bytes``,
    or one ``InputError`` line saying why it cannot be read (also: not UTF-8)."""
    data = read_user_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
