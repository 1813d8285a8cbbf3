"""Ray scale-out: a benchmark on 2 simulated GPU workers vs 1, same fake latencies.

A local Ray runtime with a custom resource ``sim_gpu`` standing in for GPUs; each generator actor
holds one unit and renders with a fixed latency (``--generator`` seconds, the device held), the MLLM
answers after ``--mllm`` seconds in the driver. Prints images per second with 1 and 2 actors and
their ratio (goal: >= 1.8x). Needs the ray extra.

    python benchmarks/ray_scaling.py [--prompts 60] [--mllm 0.4] [--generator 0.5]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mllm_guidance.backends.ray_pool import RayOptions  # noqa: E402
from benchmarks.bench_timing import bench_seconds  # noqa: E402
from tests.fakes import WorkerSketch  # noqa: E402


def timed(prompts: int, workers: int, mllm: float, generator: float) -> float:
    # items in flight that keep every worker busy (Little's law), plus a margin
    concurrency = math.ceil(workers * (2 * mllm + generator) / generator * 1.25)
    return bench_seconds(prompts, mllm, generator=WorkerSketch(generator), concurrency=concurrency,
                         config={"self_correct": False, "width": 64, "height": 64},
                         ray=RayOptions(resources={"sim_gpu": 1}, workers=workers))


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
