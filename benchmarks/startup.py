"""How long the command line takes before it does anything, and where the demo's wall time goes.

    python benchmarks/startup.py [--repeats 7]

Prints the median wall time of ``mllm-guidance --help`` and of each subcommand's ``--help`` beside
``python -c pass`` measured in the same run (goal: --help under 0.3 s on a 2-core machine), and the
README's demo (replay + sketch) split into interpreter start and imports (the sum of the top-level
rows of ``-X importtime``), the method itself (the run's own ``seconds``) and what is left after the
command returned (interpreter exit: thread pools, the background loop, module teardown). One run
each; these machines are shared, so compare ratios taken in one run, never absolute numbers across
runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_PROMPT = "A man is sitting under a tree while a bird is in the tree."
COMMANDS = ["", "generate", "plan", "bench", "templates", "trace", "mcp", "studio"]
#: In-process timestamps for the demo: when main() returned, as wall-clock seconds.
DEMO = """
import sys, time
from mllm_guidance.cli import main
code = main(sys.argv[1:])
print(f"@returned {time.time()!r}", file=sys.stderr, flush=True)
sys.exit(code)
"""


def wall(argv: list[str], repeats: int) -> float:
    """Median wall seconds of a command (its output discarded; it must succeed)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def help_times(repeats: int) -> None:
    base = wall([sys.executable, "-c", "pass"], repeats)
    print(f"python -c pass: {base:.3f} s (median of {repeats})")
    for command in COMMANDS:
        argv = [sys.executable, "-m", "mllm_guidance.cli", *([command] if command else []), "--help"]
        seconds = wall(argv, repeats)
        flag = "ok" if seconds < 0.3 else "OVER 0.3 s"
        print(f"mllm-guidance {command + ' ' if command else ''}--help: {seconds:.3f} s "
              f"({seconds / base:.1f}x python -c pass) {flag}")


def demo_split() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-X", "importtime", "-c", DEMO, "generate", DEMO_PROMPT,
                "--mllm", "replay:examples/recordings/man-under-tree.json", "--generator", "sketch",
                "--out", str(Path(tmp) / "demo"), "--json", "--quiet"]
        started = time.time()
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        ended = time.time()
    if done.returncode != 0:
        raise SystemExit(f"the demo failed:\n{done.stderr[-2000:]}")
    returned = float(re.search(r"@returned (\S+)", done.stderr).group(1))
    # top-level rows of -X importtime: "import time: self | cumulative | name" with no indent
    imports = sum(int(m.group(1)) for m in re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \| \S", done.stderr, re.M)) / 1e6
    method = json.loads(done.stdout)["seconds"]
    total = ended - started
    exit_ = ended - returned
    rest = total - imports - method - exit_
    print(f"demo: {total:.2f} s wall (-X importtime adds a little)")
    for name, seconds in (("imports", imports), ("method", method), ("interpreter exit", exit_),
                          ("the rest (start, evidence, output)", rest)):
        print(f"  {name:<36}{seconds:6.2f} s  {seconds / total:5.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    help_times(args.repeats)
    demo_split()


if __name__ == "__main__":
    main()
