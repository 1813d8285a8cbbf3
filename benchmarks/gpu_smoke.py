"""CUDA smoke test of every diffusers generator backend with tiny random-weight pipelines.

For gligen, gligen-xl and text2image: load in half precision on the GPU, render 64 x 64 images
(with and without boxes), check the weights sit on the device in the requested dtype, and print
seconds per image and peak GPU memory. Without CUDA it says so and exits 0.

    python benchmarks/gpu_smoke.py [--dtype float16|bfloat16] [--steps 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float16")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipped")
        return 0
    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return 0

    from mllm_guidance.backends.generator import GenerationRequest
    from mllm_guidance.backends.gligen import GligenGenerator
    from mllm_guidance.backends.gligen_xl import GligenXLGenerator
    from mllm_guidance.backends.text2image import Text2ImageGenerator
    from mllm_guidance.layout import Layout
    from tests.backends.tiny_diffusion import build_tiny_gligen, build_tiny_gligen_xl

    layout = Layout.from_pairs([("a cat", [0.1, 0.1, 0.5, 0.5]), ("a dog", [0.5, 0.5, 0.9, 0.9])])
    print(f"device: {torch.cuda.get_device_name(0)}, dtype {args.dtype}, {args.steps} steps, 64x64")
    print(f"{'backend':<12} {'load (s)':>9} {'boxes (s/img)':>14} {'no boxes (s/img)':>17} {'peak (MiB)':>11}  placement")
    with tempfile.TemporaryDirectory() as tmp:
        builds = {
            "gligen": (GligenGenerator, build_tiny_gligen(Path(tmp) / "g"), {"steps": args.steps}),
            "gligen-xl": (GligenXLGenerator, build_tiny_gligen_xl(Path(tmp) / "gx"), {"steps": args.steps}),
            "text2image": (Text2ImageGenerator, build_tiny_gligen(Path(tmp) / "sd", gated=False), {}),
        }
        for name, (cls, path, extra) in builds.items():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            gen = cls(str(path), device="cuda", dtype=args.dtype, **extra)
            load = time.perf_counter() - started
            params = [p for p in gen.pipe.unet.parameters()]
            placement = f"{params[0].device.type}/{str(params[0].dtype).removeprefix('torch.')}"
            timings = []
            for lay in (layout, Layout()):
                gen.generate(GenerationRequest(prompt="a cat and a dog", layout=lay, seed=0, width=64, height=64, steps=args.steps))
                torch.cuda.synchronize()
                started = time.perf_counter()
                for seed in range(3):
                    out = gen.generate(GenerationRequest(prompt="a cat and a dog", layout=lay, seed=seed, width=64, height=64, steps=args.steps))
                torch.cuda.synchronize()
                timings.append((time.perf_counter() - started) / 3)
                assert out.image.size == (64, 64)
            peak = torch.cuda.max_memory_allocated() / 2**20
            print(f"{name:<12} {load:>9.2f} {timings[0]:>14.3f} {timings[1]:>17.3f} {peak:>11.1f}  {placement}")
            del gen
    return 0


if __name__ == "__main__":
    sys.exit(main())
