"""Benchmark-runner throughput: how close it gets to keeping the generator busy.

50 prompts; a fake MLLM that waits 0.4 s per call; a fake generator that holds the device 0.2 s
per image (so no runner can beat 1 / 0.2 = 5 images per second). Full mode without self-correct,
good at the first judgement: 2 MLLM calls and 1 render per prompt. Prints achieved images per
second over that generator-bound limit, and the speedup over running the prompts one after
another (measured on the first 10 prompts). The goal is at least 0.95 of the limit.

    python benchmarks/throughput.py [--prompts 50] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mllm_guidance.backends.generator import GenerationRequest, Generated  # noqa: E402
from mllm_guidance.eval.runner import BenchSpec, run_bench  # noqa: E402
from tests.fakes import StepChatModel  # noqa: E402

MLLM_SECONDS, GENERATOR_SECONDS = 0.4, 0.2


class DeviceHolder:
    """Holds the 'device' for GENERATOR_SECONDS and returns a small ready-made image."""

    name = "device-holder"
    default_size = (64, 64)

    def __init__(self) -> None:
        from PIL import Image

        self.image = Image.new("RGB", self.default_size, (120, 140, 160))

    def generate(self, request: GenerationRequest) -> Generated:
        time.sleep(GENERATOR_SECONDS)
        return Generated(self.image)


def timed(prompts: int, concurrency: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "prompts.txt"
        data.write_text("\n".join(f"A cat number {i} sits next to a dog." for i in range(prompts)) + "\n")
        spec = BenchSpec(dataset=str(data), out=Path(tmp) / "out", mllm=StepChatModel(delay=MLLM_SECONDS),
                         generator=DeviceHolder(), config={"self_correct": False},
                         concurrency=concurrency)
        started = time.perf_counter()
        records = asyncio.run(run_bench(spec))
        elapsed = time.perf_counter() - started
        assert len(records) == prompts and all(r["status"] == "ok" for r in records)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    timed(2, 2)  # warm-up: imports, templates
    concurrent = timed(args.prompts, args.concurrency)
    sequential = timed(10, 1) / 10 * args.prompts
    achieved = args.prompts / concurrent
    limit = 1 / GENERATOR_SECONDS
    # even a perfect runner waits for one MLLM call before the first render and one after the last
    bound = MLLM_SECONDS + args.prompts * GENERATOR_SECONDS + MLLM_SECONDS
    print(f"{args.prompts} prompts, concurrency {args.concurrency}: {concurrent:.2f}s, {achieved:.2f} img/s")
    print(f"generator-bound limit {limit:.2f} img/s -> achieved/limit = {achieved / limit:.3f} (goal >= 0.95)")
    print(f"best possible time {bound:.1f}s (first place + renders + last judgement) -> {bound / concurrent:.3f} of it")
    print(f"one after another: {sequential:.1f}s (from 10 prompts) -> speedup {sequential / concurrent:.1f}x")


if __name__ == "__main__":
    main()
