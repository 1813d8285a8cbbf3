"""What the runner benchmarks share: a benchmark of ``prompts`` numbered prompts with the fake step
MLLM answering after ``mllm_seconds``, timed end to end; every record must be ok."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mllm_guidance.eval.runner import BenchSpec, run_bench  # noqa: E402
from tests.fakes import StepChatModel  # noqa: E402


def bench_seconds(prompts: int, mllm_seconds: float, **spec: Any) -> float:
    """Seconds ``run_bench`` takes for ``prompts`` prompts (``spec``: the rest of the BenchSpec)."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "prompts.txt"
        data.write_text("\n".join(f"A cat number {i} sits next to a dog." for i in range(prompts)) + "\n")
        bench = BenchSpec(dataset=str(data), out=Path(tmp) / "out", mllm=StepChatModel(delay=mllm_seconds), **spec)
        started = time.perf_counter()
        records = asyncio.run(run_bench(bench))
        elapsed = time.perf_counter() - started
        assert len(records) == prompts and all(r["status"] == "ok" for r in records), records[:1]
    return elapsed
