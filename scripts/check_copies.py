"""Check that code marked ``# Copied from mllm_guidance.<module>.<name>`` still matches its source.

diffusers' habit for code a pipeline keeps its own copy of: the line right above the copy's ``def``
or ``class`` (above its decorators, if any) names the original, optionally with replacements::

    # Copied from mllm_guidance.backends.layout_pipelines.gligen_xl_pipeline.StableDiffusionXLGLIGENPipeline.set_fusers with self.unet->unet

The copy's body (everything below its signature, docstring included, compared without its
indentation) must equal the original's body after each ``A->B`` replacement is applied to the
original's text, in order. Signatures may differ: a method may be copied as a function. So a change
to the original fails this check until it is carried to every copy (``--fix`` carries it).

    python scripts/check_copies.py          # exit 1 and one line per drifted copy
    python scripts/check_copies.py --fix    # rewrite drifted copies from their originals

``tests/test_copies.py`` runs the check on the package. Only names inside ``mllm_guidance`` can be
checked; a copy of third-party code (diffusers') says so in prose instead.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "mllm_guidance"
MARKER = re.compile(rf"^\s*# Copied from ({PACKAGE}(?:\.\w+)+)(?:\s+with\s+(.+?))?\s*$")
Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


@dataclass
class Copy:
    """One marked copy: where it is, what it names, the replacements, and the lines of its body."""

    path: Path
    marker_line: int  # 1-based
    source: str
    replacements: list[tuple[str, str]]
    body: tuple[int, int]  # 0-based [start, end) of the copy's body in its file's lines


def parse_replacements(text: str | None, where: str) -> list[tuple[str, str]]:
    """``A->B, C->D`` as pairs; anything else is a malformed marker."""
    pairs = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        old, arrow, new = part.strip().partition("->")
        if not arrow or not old:
            raise ValueError(f"{where}: replacement {part.strip()!r} is not written as old->new")
        pairs.append((old, new))
    return pairs


def body_span(node: Definition) -> tuple[int, int]:
    """0-based [start, end) of the lines below the signature: from the first statement to the last."""
    return node.body[0].lineno - 1, node.end_lineno or node.body[-1].end_lineno or node.lineno


def definitions(tree: ast.AST) -> list[Definition]:
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]


def find_copies(path: Path) -> list[Copy]:
    """The marked copies in one file; a marker with no definition right under it is an error."""
    lines = path.read_text().splitlines()
    starts = {min([d.lineno for d in node.decorator_list] + [node.lineno]): node
              for node in definitions(ast.parse("\n".join(lines)))}
    copies = []
    for number, line in enumerate(lines, 1):
        match = MARKER.match(line)
        if match is None:
            continue
        where = f"{path}:{number}"
        node = starts.get(number + 1)
        if node is None:
            raise ValueError(f"{where}: '# Copied from' must stand right above a def or class")
        copies.append(Copy(path, number, match.group(1), parse_replacements(match.group(2), where), body_span(node)))
    return copies


def source_body(name: str, root: Path) -> str:
    """The dedented body of ``mllm_guidance.<module>.<object>[.<member>...]`` under ``root``."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = root.joinpath(*parts[:cut]).with_suffix(".py")
        if module.is_file():
            break
    else:
        raise LookupError(f"{name}: no module of {PACKAGE} holds it")
    lines = module.read_text().splitlines()
    scope: list[ast.stmt] = ast.parse("\n".join(lines)).body
    node: Definition | None = None
    for member in parts[cut:]:
        node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == member), None)
        if node is None:
            raise LookupError(f"{name}: {module.relative_to(root)} defines no {member!r} there")
        scope = node.body
    start, end = body_span(node)
    return textwrap.dedent("\n".join(lines[start:end]))


def expected_body(copy: Copy, root: Path) -> str:
    text = source_body(copy.source, root)
    for old, new in copy.replacements:
        text = text.replace(old, new)
    return text


def check(root: Path = ROOT, fix: bool = False) -> list[str]:
    """One line per copy that differs from its original (rewritten from it with ``fix``)."""
    problems = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        copies = find_copies(path)
        if not copies:
            continue
        lines, drifted = path.read_text().splitlines(), False
        for copy in reversed(copies):  # from the bottom, so a rewrite leaves the spans above valid
            start, end = copy.body
            want = expected_body(copy, root)
            if textwrap.dedent("\n".join(lines[start:end])) == want:
                continue
            drifted = True
            problems.append(f"{path.relative_to(root)}:{copy.marker_line}: the copy of {copy.source} differs from it")
            indent = re.match(r"\s*", lines[start]).group(0)
            lines[start:end] = [indent + line if line else line for line in want.splitlines()]
        if fix and drifted:
            path.write_text("\n".join(lines) + "\n")
    return sorted(problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fix", action="store_true", help="rewrite each drifted copy from its original")
    args = parser.parse_args(argv)
    try:
        problems = check(ROOT, fix=args.fix)
    except (ValueError, LookupError) as exc:
        print(exc, file=sys.stderr)
        return 2
    for line in problems:
        print(line)
    if problems and not args.fix:
        print("carry the change to each copy, or run: python scripts/check_copies.py --fix", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
