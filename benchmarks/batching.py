"""Batched vs lone renders on the tiny random-weight GLIGEN pipeline (CPU): images per second at
batch 1, 2 and 4, each batch a different prompt, layout and seed, as the runner's coalescing
produces them. On one torch thread by default, so the ratio is the pipeline's, not the scheduler's
of a shared machine (``--threads`` to change). A batch saves the per-call work around the denoiser
(text encoding setup, scheduler steps, Python per step); on a GPU it also fills the device, which a
lone SD/SDXL render at 512-1024 px does only partly.

    python benchmarks/batching.py [--steps 20] [--images 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mllm_guidance.backends.generator import GenerationRequest, render, render_batch  # noqa: E402
from mllm_guidance.backends.gligen import GligenGenerator  # noqa: E402
from mllm_guidance.layout import Layout  # noqa: E402
from tests.backends.tiny_diffusion import build_tiny_gligen  # noqa: E402

LAYOUTS = [
    Layout.from_pairs([("a cat", [0.05, 0.1, 0.5, 0.6]), ("a dog", [0.5, 0.4, 0.95, 0.95])]),
    Layout.from_pairs([("a red ball", [0.3, 0.2, 0.9, 0.6])]),
    Layout.from_pairs([("a man", [0.1, 0.5, 0.45, 0.95]), ("a tree", [0.35, 0.05, 0.95, 0.9]), ("a bird", [0.6, 0.15, 0.75, 0.3])]),
    Layout.from_pairs([("a cup", [0.4, 0.4, 0.6, 0.7])]),
]


def requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(prompt=f"scene {i}", layout=LAYOUTS[i % len(LAYOUTS)], seed=i, width=64, height=64)
            for i in range(n)]


def images_per_second(generator: GligenGenerator, batch: int, images: int) -> float:
    todo = requests(images)
    started = time.perf_counter()
    for i in range(0, images, batch):
        chunk = todo[i:i + batch]
        if batch == 1:
            render(generator, chunk[0])
        else:
            render_batch(generator, chunk)
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        generator = GligenGenerator(str(build_tiny_gligen(Path(tmp) / "g")), steps=args.steps)
        images_per_second(generator, 2, 4)  # warm-up
        rates = {b: images_per_second(generator, b, args.images) for b in (1, 2, 4)}
    print(f"tiny GLIGEN, 64x64, {args.steps} steps, {args.images} images, {args.threads} torch thread(s):")
    for b, rate in rates.items():
        print(f"  batch {b}: {rate:6.2f} img/s  ({rate / rates[1]:.2f}x batch 1)")


if __name__ == "__main__":
    main()
