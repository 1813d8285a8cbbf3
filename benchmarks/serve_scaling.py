"""The Ray Serve generator pool: a benchmark on 2 replicas vs 1, simulated renders at 1024 px.

A local Ray runtime with a custom resource ``sim_gpu`` standing in for GPUs; the pool
(``backends.serve_pool.deploy``) runs a generator that holds its replica ``--render`` seconds and
returns a photo-like image of ``--size`` pixels, which travels back over HTTP as raw pixels (3 MB
at 1024 px: the object transfer is in the figures). The benchmark runner renders on it through a
``serve:`` spec, with the MLLM answering after ``--mllm`` seconds. Prints images per second with
1 and 2 replicas, their ratio (goal >= 1.8x) and the driver's CPU-seconds per image. Needs the
ray extra.

    python benchmarks/serve_scaling.py [--prompts 40] [--mllm 0.4] [--render 1.0] [--size 1024]
"""

from __future__ import annotations

import argparse
import math
import resource
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_timing import bench_seconds  # noqa: E402
from benchmarks.throughput import DeviceHolder  # noqa: E402
from mllm_guidance.backends.serve_client import ServeGenerator  # noqa: E402
from mllm_guidance.backends.serve_pool import deploy  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(url: str, prompts: int, replicas: int, mllm: float, render: float, size: int) -> tuple[float, float]:
    concurrency = math.ceil(replicas * (2 * mllm + render) / render * 1.25)  # Little's law, plus a margin
    generator = ServeGenerator(url)
    before = cpu_seconds()
    seconds = bench_seconds(prompts, mllm, generator=generator, concurrency=concurrency,
                            config={"self_correct": False, "width": size, "height": size})
    generator.close()
    return seconds, cpu_seconds() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--mllm", type=float, default=0.4)
    parser.add_argument("--render", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    import ray
    from ray import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, resources={"sim_gpu": 2}, include_dashboard=False, log_to_driver=False)
    rates = {}
    try:
        for replicas in (1, 2):
            name = f"sim{replicas}"
            url = deploy(DeviceHolder(args.render, args.size), name=name, replicas=replicas, resources={"sim_gpu": 1},
                         port=port)
            timed(url, 2, replicas, 0.0, 0.01, 64)  # warm-up: connections, imports in the replicas
            seconds, cpu = timed(url, args.prompts, replicas, args.mllm, args.render, args.size)
            rates[replicas] = (args.prompts / seconds, cpu / args.prompts)
            serve.delete(name)
    finally:
        serve.shutdown()
        ray.shutdown()
    print(f"{args.prompts} prompts at {args.size} px, MLLM {args.mllm}s, render {args.render}s "
          f"(limit {1 / args.render:.2f} img/s per replica)")
    for replicas, (rate, cpu) in rates.items():
        print(f"  {replicas} replica(s): {rate:.2f} img/s ({rate * args.render / replicas:.3f} of their limit), "
              f"driver CPU {cpu:.3f} s per image")
    print(f"  2 vs 1: {rates[2][0] / rates[1][0]:.2f}x (goal >= 1.8x)")


if __name__ == "__main__":
    main()
