"""Seconds per parse for adversarial MLLM answers of 4 KB, 32 KB, 100 KB and 1 MB.

Each shape below once made a parser scan the rest of the answer again from every character
(``[[[[...`` took 2.3 s at 4 KB and 57 s at 100 KB per parse, and an unreadable answer is parsed
up to 1 + retries times). Every parse runs in its own process, so a slow one can be stopped at
``--timeout`` and reported as such instead of holding the table hostage.

    python benchmarks/parser_adversarial.py [--timeout 90] [--sizes 4096,32768,102400,1048576]

To measure another checkout (e.g. before a change), put it first on the path:

    PYTHONPATH=/path/to/other/checkout python benchmarks/parser_adversarial.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

BOX = " [0.1, 0.1, 0.5, 0.5]"


def _repeat(unit: str, size: int, head: str = "", tail: str = "") -> str:
    return head + unit * max(1, (size - len(head) - len(tail)) // len(unit)) + tail


CASES = {
    "bracket run [[[[": lambda n: _repeat("[", n),
    "deep balanced [[x]]": lambda n: _repeat("[", n // 2) + "x" + "]" * (n // 2),
    'keys {"a":{"a":': lambda n: _repeat('{"a":', n),
    'quoted ["[["': lambda n: _repeat('["', n),
    "header + spaces": lambda n: _repeat(" ", n, head="objects"),
    "name + closers )))": lambda n: _repeat(")", n, head="Objects:\n- a cat", tail=BOX),
    "bullets 1. 1. 1.": lambda n: _repeat("1. ", n, head="Objects:\n", tail="a cat" + BOX),
    "blank lines": lambda n: _repeat("\n", n, head="Objects:\n- a cat" + BOX),
    "many objects": lambda n: _repeat("- a cat" + BOX + "\n", n, head="Objects:\n"),
    "think tags": lambda n: _repeat("<think>", n),
}
PARSERS = ("parse_layout", "parse_score")


def one(case: str, size: int, parser: str) -> None:
    """Child: build the text, parse it once, print the seconds and the outcome."""
    from mllm_guidance import prompts

    text = CASES[case](size)
    parse = getattr(prompts, parser)
    started = time.perf_counter()
    try:
        parse(text)
        outcome = "value"
    except prompts.GuidanceError as exc:
        outcome = type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - a crash is a result here
        outcome = f"CRASH {type(exc).__name__}"
    print(f"{time.perf_counter() - started:.4f} {outcome}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=90.0, help="seconds before one parse is stopped")
    ap.add_argument("--sizes", default="4096,32768,102400,1048576")
    ap.add_argument("--one", nargs=3, metavar=("CASE", "SIZE", "PARSER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one(args.one[0], int(args.one[1]), args.one[2])
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    probe = subprocess.run(
        [sys.executable, "-P", "-c", "import mllm_guidance; print(mllm_guidance.__file__)"],
        capture_output=True, text=True, check=True,
    )
    print(f"package: {probe.stdout.strip()}")
    print(f"seconds per parse (one run each; stopped after {args.timeout:g} s)\n")
    header = f"{'case':24s} {'parser':13s}" + "".join(f"{_label(s):>22s}" for s in sizes)
    print(header)
    print("-" * len(header))
    for case in CASES:
        for parser in PARSERS:
            cells = []
            for size in sizes:
                cmd = [sys.executable, os.path.abspath(__file__), "--one", case, str(size), parser]
                try:
                    done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
                    out = done.stdout.strip() or f"CRASH rc={done.returncode}"
                    seconds, _, outcome = out.partition(" ")
                    cells.append(f"{float(seconds):8.3f} {_short(outcome)}")
                except subprocess.TimeoutExpired:
                    cells.append(f">{args.timeout:g} s stopped")
                except ValueError:
                    cells.append(out[:21])
            print(f"{case:24s} {parser:13s}" + "".join(f"{c:>22s}" for c in cells), flush=True)


def _label(size: int) -> str:
    return f"{size // 1048576} MB" if size >= 1048576 else f"{size // 1024} KB"


def _short(outcome: str) -> str:
    return {"value": "ok", "LayoutParseError": "error", "ScoreParseError": "error"}.get(outcome, outcome[:12])


if __name__ == "__main__":
    main()
