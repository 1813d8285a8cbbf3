"""``generate --review``: show the planned layout on the terminal and ask the person to accept it,
edit it in ``$VISUAL`` / ``$EDITOR``, or stop. An edit that does not parse is shown with the reason
and asked again; nothing is lost."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from mllm_guidance.errors import InputError
from mllm_guidance.review import ReviewDecision, ReviewRequest

HEADER = ("# Edit the boxes: one object a line, - name [x1, y1, x2, y2], 0..1 with the origin top-left.\n"
          "# Lines starting with # are ignored. Save and close the editor to continue.\n")


def terminal_reviewer(progress: Any, stdin: TextIO | None = None, out: TextIO | None = None) -> Any:
    """A reviewer (``review=``) that asks on the terminal."""

    def ask(request: ReviewRequest) -> ReviewDecision:
        progress.close()  # no spinner over the question
        reader, writer = stdin or sys.stdin, out or sys.stderr
        where = "before the first image" if request.stage == "plan" else f"before round {request.round}"
        print(f"\nreview {where}: {request.prompt}", file=writer)
        print(request.layout.to_lines(), file=writer)
        if request.reasoning:
            print(f"why: {request.reasoning}", file=writer)
        if request.preview_path:
            print(f"preview: {request.preview_path}", file=writer)
        layout_text = request.layout.to_lines()
        while True:
            print("[a]ccept, [e]dit in your editor, or [s]top? ", end="", file=writer, flush=True)
            answer = reader.readline()
            if not answer:
                raise InputError("no answer to the review (stdin closed); resume the run with --resume DIR --review")
            choice = answer.strip().lower()[:1]
            if choice == "a":
                return ReviewDecision.approve()
            if choice == "s":
                return ReviewDecision.stop()
            if choice != "e":
                continue
            layout_text = edit_in_editor(layout_text)
            try:
                decision = ReviewDecision.edit(layout_text)
            except InputError as exc:
                print(f"error: {exc}", file=writer)
                continue
            print(decision.layout.to_lines(), file=writer)
            return decision

    return ask


def edit_in_editor(text: str) -> str:
    """``text`` after the person edited it in ``$VISUAL`` or ``$EDITOR`` (vi when neither is set)."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "layout.txt"
        path.write_text(HEADER + text + "\n", encoding="utf-8")
        try:
            done = subprocess.run([*shlex.split(editor), str(path)], check=False)
        except OSError as exc:
            raise InputError(f"cannot start the editor {editor!r} ({exc.strerror}); set EDITOR") from None
        if done.returncode != 0:
            raise InputError(f"the editor {editor!r} exited with status {done.returncode}; the layout was not changed")
        edited = path.read_text(encoding="utf-8", errors="replace")
    return "\n".join(line for line in edited.splitlines() if not line.lstrip().startswith("#")).strip()
