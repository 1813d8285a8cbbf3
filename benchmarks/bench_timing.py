"""What the runner benchmarks share: a benchmark of ``prompts`` numbered prompts with the fake step
MLLM answering after ``mllm_seconds``, timed end to end; every record must be ok.

Wall-clock time on a shared machine says as much about the neighbours as about the runner, so
``bench_measure`` also reports the process's CPU-seconds (all threads) and the bytes the benchmark
left on disk."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mllm_guidance.eval.runner import BenchSpec, run_bench  # noqa: E402
from tests.fakes import StepChatModel  # noqa: E402


@dataclass(frozen=True)
class BenchCost:
    seconds: float  # wall clock, end to end
    cpu_seconds: float  # this process's CPU time (user + system, every thread)
    disk_bytes: int  # what the benchmark's output directory holds on disk (hard links counted once)


def bench_measure(prompts: int, mllm_seconds: float, **spec: Any) -> BenchCost:
    """Wall clock, CPU-seconds and disk bytes of ``run_bench`` on ``prompts`` prompts (``spec``: the
    rest of the BenchSpec)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "prompts.txt"
        data.write_text("\n".join(f"A cat number {i} sits next to a dog." for i in range(prompts)) + "\n")
        bench = BenchSpec(dataset=str(data), out=Path(tmp) / "out", mllm=StepChatModel(delay=mllm_seconds), **spec)
        started, cpu = time.perf_counter(), time.process_time()
        records = asyncio.run(run_bench(bench))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        assert len(records) == prompts and all(r["status"] == "ok" for r in records), records[:1]
        return BenchCost(elapsed, cpu, disk_bytes(Path(tmp) / "out"))


def bench_seconds(prompts: int, mllm_seconds: float, **spec: Any) -> float:
    """Seconds ``run_bench`` takes for ``prompts`` prompts."""
    return bench_measure(prompts, mllm_seconds, **spec).seconds


def disk_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root``, each inode once (a hard link is not a second copy)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
