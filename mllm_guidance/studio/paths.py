"""Where the studio may write and read: run directories under its runs root, benchmark directories
under its bench root. A browser user types names; they are resolved and checked here, never used
as paths as typed."""

from __future__ import annotations

from pathlib import Path

from mllm_guidance.errors import InputError


def inside(root: Path, name: str, what: str) -> Path:
    """``root / name`` resolved, or an ``InputError`` when it leads outside ``root`` or cannot be a
    name (a NUL byte, a link loop); the message names the root by its kind, not its absolute path."""
    root = root.resolve()
    name = (name or "").strip()
    if not name:
        raise InputError(f"give a {what} name")
    if "\0" in name:
        raise InputError(f"a {what} name cannot hold a NUL character")
    try:
        path = (root / name).resolve()
    except (OSError, RuntimeError):  # a link loop, a name too long
        raise InputError(f"{_short(name)} is not a usable {what} name") from None
    if path != root and root not in path.parents:
        raise InputError(f"{_short(name)} is outside the studio's {what} directory; give a name inside it")
    return path


def _short(name: str, limit: int = 60) -> str:
    return repr(name) if len(name) <= limit else repr(name[:limit]) + "..."


def run_dirs(root: Path) -> list[str]:
    """Names of the finished runs under the runs root, newest first."""
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "run.json").is_file()]
    return [p.name for p in sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)]


def bench_dirs(root: Path) -> list[str]:
    """Names of the benchmark output directories under the bench root (those with results), newest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / "results.jsonl").is_file()]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]

