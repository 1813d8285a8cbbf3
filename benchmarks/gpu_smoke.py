"""CUDA smoke test of every diffusers generator backend with tiny random-weight pipelines.

For gligen, gligen-xl, text2image, regional-flux, creatilayout (SD3 and FLUX) and eligen-qwen: load in half
precision on the GPU, render 64 x 64 images (with and without boxes), check the weights sit on the
device in the requested dtype, and print seconds per image and peak GPU memory. Without CUDA it says
so and exits 0; ``--cpu`` runs the same renders on the CPU in fp32 (no memory column), to check the
script itself where there is no GPU.

    python benchmarks/gpu_smoke.py [--dtype float16|bfloat16] [--steps 10] [--only regional-flux,creatilayout-sd3] [--cpu]
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
    parser.add_argument("--only", help="comma-separated backends (default: all)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU in fp32 (checks the script without a GPU)")
    parser.add_argument("--no-speed", action="store_true", help="skip the batch and compile timings")
    parser.add_argument("--repair-size", type=int, default=256,
                        help="image side of the repair vs full render timing (the tiny SD3 tops out at 256)")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipped")
        return 0
    cuda = torch.cuda.is_available() and not args.cpu
    if not cuda and not args.cpu:
        print("no CUDA device: skipped (--cpu runs the renders on the CPU)")
        return 0
    device, dtype = ("cuda", args.dtype) if cuda else ("cpu", "float32")

    from mllm_guidance.backends.creatilayout import CreatiLayoutGenerator
    from mllm_guidance.backends.eligen_qwen import EliGenQwenGenerator
    from mllm_guidance.backends.gligen import GligenGenerator
    from mllm_guidance.backends.gligen_xl import GligenXLGenerator
    from mllm_guidance.backends.regional_flux import RegionalFluxGenerator
    from mllm_guidance.backends.text2image import Text2ImageGenerator
    from mllm_guidance.layout import Layout
    from tests.backends.tiny_diffusion import build_tiny_gligen, build_tiny_gligen_xl
    from tests.backends.tiny_dit import build_tiny_creatilayout_flux, build_tiny_creatilayout_sd3, build_tiny_flux
    from tests.backends.tiny_qwen_image import build_tiny_qwen_image

    layout = Layout.from_pairs([("a cat", [0.1, 0.1, 0.5, 0.5]), ("a dog", [0.5, 0.5, 0.9, 0.9])])
    name_of = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(f"device: {name_of}, dtype {dtype}, {args.steps} steps, 64x64")
    print(f"{'backend':<18} {'load (s)':>9} {'boxes (s/img)':>14} {'no boxes (s/img)':>17} {'peak (MiB)':>11}  placement")
    steps = {"steps": args.steps}
    # the short smoke renders ground every step (constructor options of the DiT backends)
    builds = {
        "gligen": (GligenGenerator, lambda d: build_tiny_gligen(d), steps),
        "gligen-xl": (GligenXLGenerator, lambda d: build_tiny_gligen_xl(d), steps),
        "text2image": (Text2ImageGenerator, lambda d: build_tiny_gligen(d, gated=False), {}),
        "regional-flux": (RegionalFluxGenerator, lambda d: build_tiny_flux(d, dev=True), {**steps, "mask_share": 1.0}),
        "creatilayout-sd3": (CreatiLayoutGenerator, build_tiny_creatilayout_sd3, {**steps, "grounding_share": 1.0}),
        "creatilayout-flux": (CreatiLayoutGenerator, build_tiny_creatilayout_flux, {**steps, "grounding_share": 1.0}),
        "eligen-qwen": (EliGenQwenGenerator, build_tiny_qwen_image, steps),
    }
    wanted = args.only.split(",") if args.only else list(builds)
    speed, repairs, failed = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in wanted:
            try:
                rows = smoke_one(name, *builds[name], tmp, layout, args, device, dtype, cuda)
            except Exception as exc:  # one backend's failure must not hide the others'
                failed.append(name)
                print(f"{name:<18} FAILED: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                continue
            speed += rows[0]
            repairs += rows[1]
    if speed:
        print(f"\n{'backend':<18} {'b1 (s/img)':>11} {'b2 (s/img)':>11} {'b4 (s/img)':>11} {'b4 vs b1':>9} "
              f"{'compiled (s/img)':>17} {'vs eager':>9}")
        for row in speed:
            print(row)
    if repairs:
        print(f"\n{'backend':<18} {'full render (s)':>16} {'repair round (s)':>17} {'repair / full':>14}  "
              f"({args.repair_size}x{args.repair_size}, {args.steps} steps, mask: a quarter of the image)")
        for row in repairs:
            print(row)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


def smoke_one(name, cls, build, extra, tmp, layout, args, device, dtype, cuda):
    """Load one backend, render with and without boxes, print its row; returns its speed and repair rows."""
    import torch

    from mllm_guidance.backends.generator import GenerationRequest
    from mllm_guidance.layout import Layout

    path = build(Path(tmp) / name)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    gen = cls(str(path), device=device, dtype=dtype, **extra)
    load = time.perf_counter() - started
    denoiser = getattr(gen.pipe, "unet", None) or gen.pipe.transformer
    param = next(denoiser.parameters())
    placement = f"{param.device.type}/{str(param.dtype).removeprefix('torch.')}"
    timings = []
    for lay in (layout, Layout()):
        request = dict(prompt="a cat and a dog", layout=lay, width=64, height=64, steps=args.steps)
        gen.generate(GenerationRequest(seed=0, **request))
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for seed in range(3):
            out = gen.generate(GenerationRequest(seed=seed, **request))
        if cuda:
            torch.cuda.synchronize()
        timings.append((time.perf_counter() - started) / 3)
        assert out.image.size == (64, 64)
    peak = f"{torch.cuda.max_memory_allocated() / 2**20:>11.1f}" if cuda else f"{'-':>11}"
    print(f"{name:<18} {load:>9.2f} {timings[0]:>14.3f} {timings[1]:>17.3f} {peak}  {placement}")
    speed, repairs = [], []
    if not args.no_speed:
        speed.append(speed_row(name, gen, cls, path, dict(device=device, dtype=dtype, **extra), args.steps, cuda))
        if getattr(gen, "supports_repair", False):
            repairs.append(repair_row(name, gen, args.steps, args.repair_size, cuda))
    return speed, repairs


def repair_row(name, gen, steps, side, cuda):
    """Seconds of one full render and of one repair round (VAE encode, blended-latent repaint of a
    quarter of the image, pixel composite) at ``side`` x ``side``, each the mean of three after a warm-up."""
    import torch

    from mllm_guidance.backends.generator import GenerationRequest
    from mllm_guidance.layout import Layout
    from mllm_guidance.repair import RepairInput, composite

    layout = Layout.from_pairs([("a cat", [0.1, 0.1, 0.5, 0.5]), ("a dog", [0.5, 0.5, 0.9, 0.9])])
    full = GenerationRequest(prompt="a cat and a dog", layout=layout, seed=0, width=side, height=side, steps=steps)
    base = gen.generate(full).image
    boxes = ((0.0, 0.0, 0.5, 0.5),)
    fix = GenerationRequest(prompt="a cat and a dog", layout=layout, seed=1, width=side, height=side, steps=steps,
                            repair=RepairInput(image=base, boxes=boxes, key="smoke"))

    def timed(request, repair):
        gen.generate(request)
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(3):
            image = gen.generate(request).image
            if repair:
                image = composite(image, base, boxes)
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - started) / 3

    t_full, t_repair = timed(full, False), timed(fix, True)
    return f"{name:<18} {t_full:>16.4f} {t_repair:>17.4f} {t_repair / t_full:>13.2f}x"


def speed_row(name, gen, cls, path, options, steps, cuda):
    """Seconds per image at batch 1, 2, 4, and with the denoiser compiled (CUDA, UNet backends)."""
    import torch

    from mllm_guidance.backends.generator import GenerationRequest, can_batch, render_batch
    from mllm_guidance.layout import Layout

    layouts = [Layout.from_pairs([("a cat", [0.1, 0.1, 0.5, 0.5]), ("a dog", [0.5, 0.5, 0.9, 0.9])]),
               Layout.from_pairs([("a red ball", [0.3, 0.2, 0.9, 0.6])])]

    def per_image(generator, batch):
        requests = [GenerationRequest(prompt=f"scene {i}", layout=layouts[i % 2], seed=i, width=64, height=64, steps=steps)
                    for i in range(batch)]
        render_batch(generator, requests)  # warm-up (and the compile, when compiled)
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(2):
            render_batch(generator, requests)
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - started) / (2 * batch)

    sizes = (1, 2, 4) if can_batch(gen) else (1,)
    times = {b: per_image(gen, b) for b in sizes}
    cells = [f"{times[b]:>11.4f}" if b in times else f"{'alone':>11}" for b in (1, 2, 4)]
    ratio = f"{times[1] / times[4]:>8.2f}x" if 4 in times else f"{'-':>9}"
    compiled = "-"
    if cuda and hasattr(gen.pipe, "unet"):
        fast = cls(str(path), compile=True, **options)
        compiled = per_image(fast, 1)
        del fast
    comp = f"{compiled:>17.4f} {times[1] / compiled:>8.2f}x" if compiled != "-" else f"{'-':>17} {'-':>9}"
    return f"{name:<18} {' '.join(cells)} {ratio} {comp}"


if __name__ == "__main__":
    sys.exit(main())
