"""Ray scale-out: a benchmark on 2 simulated GPU workers vs 1, same fake latencies.

A local Ray runtime with a custom resource ``sim_gpu`` standing in for GPUs; each generator actor
holds one unit and renders with a fixed latency (``--generator`` seconds, the device held), the MLLM
answers after ``--mllm`` seconds in the driver. Prints images per second with 1 and 2 actors and
their ratio (goal: >= 1.8x). Needs the ray extra.

    python benchmarks/ray_scaling.py [--prompts 60] [--mllm 0.4] [--generator 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mllm_guidance.backends.ray_pool import RayOptions  # noqa: E402
from mllm_guidance.eval.runner import BenchSpec, run_bench  # noqa: E402
from tests.fakes import StepChatModel, WorkerSketch  # noqa: E402


def timed(prompts: int, workers: int, mllm: float, generator: float) -> float:
    # items in flight that keep every worker busy (Little's law), plus a margin
    concurrency = math.ceil(workers * (2 * mllm + generator) / generator * 1.25)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "prompts.txt"
        data.write_text("\n".join(f"A cat number {i} sits next to a dog." for i in range(prompts)) + "\n")
        spec = BenchSpec(dataset=str(data), out=Path(tmp) / "out", mllm=StepChatModel(delay=mllm),
                         generator=WorkerSketch(generator), config={"self_correct": False, "width": 64, "height": 64},
                         concurrency=concurrency, ray=RayOptions(resources={"sim_gpu": 1}, workers=workers))
        started = time.perf_counter()
        records = asyncio.run(run_bench(spec))
        elapsed = time.perf_counter() - started
        assert len(records) == prompts and all(r["status"] == "ok" for r in records), records[:1]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--mllm", type=float, default=0.4)
    parser.add_argument("--generator", type=float, default=0.5)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=2, resources={"sim_gpu": 2}, include_dashboard=False, log_to_driver=False)
    try:
        timed(4, 2, 0.0, 0.01)  # warm-up: actor start, imports in the workers
        one = args.prompts / timed(args.prompts, 1, args.mllm, args.generator)
        two = args.prompts / timed(args.prompts, 2, args.mllm, args.generator)
    finally:
        ray.shutdown()
    print(f"{args.prompts} prompts, MLLM {args.mllm}s, render {args.generator}s (limit {1 / args.generator:.2f} img/s per worker)")
    print(f"  1 worker : {one:.2f} img/s ({one * args.generator:.3f} of its limit)")
    print(f"  2 workers: {two:.2f} img/s ({two * args.generator / 2:.3f} of their limit)")
    print(f"  2 vs 1: {two / one:.2f}x (goal >= 1.8x)")


if __name__ == "__main__":
    main()
