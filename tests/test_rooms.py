"""Issue 26: no room imports a room above it. The rooms and their order are ARCHITECTURE.md's;
every import counts, those inside functions and under TYPE_CHECKING too (a lazy import is still a
dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mllm_guidance"

#: Rooms from the bottom up. A room imports only rooms on lower floors; the faces (top floor) may
#: also use each other (the CLI starts the servers). The package root (``__init__``) is low: it
#: holds ``__version__`` and masks HTTP logs, and loads its exports by name on first use.
FLOORS: list[set[str]] = [
    {"redact"},
    {"errors", "httplogs", "layout", "events", "background"},
    {"images", "state", "repair", "textfiles", "__init__"},
    {"draw", "store", "prompts", "checkpoint"},
    {"config", "run_settings", "review", "pages"},
    {"knobs", "backends"},
    {"settings", "context"},
    {"spec", "nodes"},
    {"graph", "evidence"},
    {"run"},
    {"api", "one_step"},
    {"eval"},
    {"tool"},
    {"mcp_server", "server", "studio", "cli", "__main__"},
]
FLOOR = {room: level for level, rooms in enumerate(FLOORS) for room in rooms}
TOP = len(FLOORS) - 1


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "mllm_guidance":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def imports(package: Path = PACKAGE) -> list[tuple[str, str, str]]:
    """(file, importing room, imported room) for every import of one room by another."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        here = relative.parts[0].removesuffix(".py") if len(relative.parts) > 1 or relative.name != "__init__.py" else "__init__"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                there = room_of(name)
                if there is not None and there != here:
                    found.append((str(relative), here, there))
    return found


def test_every_room_has_a_floor():
    rooms = {p.name.removesuffix(".py") for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert rooms - set(FLOOR) == set(), "a new room: give it a floor here and a row in ARCHITECTURE.md"


def test_no_room_imports_a_room_above_it():
    upward = [f"{file}: {here} (floor {FLOOR[here]}) imports {there} (floor {FLOOR[there]})"
              for file, here, there in imports()
              if FLOOR[there] > FLOOR[here] or (FLOOR[there] == FLOOR[here] and FLOOR[here] != TOP)]
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The walk finds imports inside functions, so a lazy upward import cannot hide."""
    fake = tmp_path / "mllm_guidance"
    fake.mkdir()
    (fake / "layout.py").write_text("def f():\n    from mllm_guidance.run import Run\n")
    assert imports(fake) == [("layout.py", "layout", "run")]
