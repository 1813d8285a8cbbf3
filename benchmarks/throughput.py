"""Benchmark-runner throughput: how close it gets to keeping the generator busy.

A fake MLLM that waits ``--mllm`` seconds per call and a fake generator that holds the device
``--generator`` seconds per image (so no runner can beat 1 / that many images per second) and
returns a photo-like image of ``--size`` pixels (a gradient with noise: PNG work close to a real
render's). Full mode without self-correct, good at the first judgement: 2 MLLM calls and 1 render
per prompt. For each combination it prints achieved images per second over the generator-bound
limit, the share of the best possible time (one MLLM call before the first render and one after the
last are unavoidable), the speedup over running prompts one after another (from 10 prompts), and
the concurrency Little's law needs to keep the generator busy (time per item / time per render).
The runner is given that concurrency plus 25 %. Goal: >= 0.95 of the limit at 64 and 1024 px.
Beside the ratios (which a shared CPU bends), the runner's own CPU-seconds per image (the process's
CPU time over the prompts; the fakes only sleep) and the disk a one-round prompt leaves (MB).

    python benchmarks/throughput.py [--prompts 200] [--mllm 0.4 2] [--generator 0.2 1] [--size 64 1024]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mllm_guidance.backends.generator import GenerationRequest, Generated  # noqa: E402
from benchmarks.bench_timing import BenchCost, bench_measure  # noqa: E402


def photo_like(size: int):
    """A gradient with noise: compresses about as badly as a real render."""
    from PIL import Image

    base = Image.linear_gradient("L").resize((size, size))
    noise = Image.effect_noise((size, size), 24)
    return Image.merge("RGB", (base, noise, Image.blend(base, noise, 0.5)))


class DeviceHolder:
    """Holds the 'device' for ``seconds`` and returns a ready-made image of ``size`` pixels."""

    name = "device-holder"

    def __init__(self, seconds: float, size: int) -> None:
        self.seconds, self.default_size, self.image = seconds, (size, size), photo_like(size)

    def generate(self, request: GenerationRequest) -> Generated:
        time.sleep(self.seconds)
        return Generated(self.image.copy())


def timed(prompts: int, concurrency: int, mllm: float, generator: float, size: int) -> BenchCost:
    return bench_measure(prompts, mllm, generator=DeviceHolder(generator, size), concurrency=concurrency,
                         config={"self_correct": False, "width": size, "height": size})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--mllm", type=float, nargs="+", default=[0.4, 2.0], help="Seconds per fake MLLM call.")
    parser.add_argument("--generator", type=float, nargs="+", default=[0.2, 1.0], help="Seconds per fake render.")
    parser.add_argument("--size", type=int, nargs="+", default=[64, 1024], help="Image side in pixels.")
    parser.add_argument("--concurrency", type=int, default=None, help="Default: Little's law + 25 %%.")
    args = parser.parse_args()
    timed(2, 2, 0.0, 0.0, 64)  # warm-up: imports, templates
    print(f"{'mllm s':>6} {'gen s':>5} {'px':>5} {'conc':>4} {'img/s':>6} {'limit':>5} {'ach/lim':>7} {'of best':>7} {'speedup':>7} {'cpu s/img':>9} {'MB/prompt':>9}")
    for mllm, generator, size in itertools.product(args.mllm, args.generator, args.size):
        little = (2 * mllm + generator) / generator  # items in flight that keep the generator busy
        concurrency = args.concurrency or math.ceil(little * 1.25)
        cost = timed(args.prompts, concurrency, mllm, generator, size)
        elapsed = cost.seconds
        sequential = timed(10, 1, mllm, generator, size).seconds / 10 * args.prompts
        achieved, limit = args.prompts / elapsed, 1 / generator
        best = mllm + args.prompts * generator + mllm
        print(f"{mllm:>6.1f} {generator:>5.1f} {size:>5} {concurrency:>4} {achieved:>6.2f} {limit:>5.1f} "
              f"{achieved / limit:>7.3f} {best / elapsed:>7.3f} {sequential / elapsed:>6.1f}x {cost.cpu_seconds / args.prompts:>9.3f} "
              f"{cost.disk_bytes / args.prompts / 1e6:>9.2f}   (Little's law: {little:.1f})")


if __name__ == "__main__":
    main()
