"""What the cheap resampling filter for the MLLM's copy costs in fidelity and saves in CPU.

The MLLM gets each round's image downscaled to ``mllm_image_side`` (768 px by default) and JPEG
encoded (quality 90). This compares each Pillow filter with LANCZOS (the reference) at the MLLM's
side, on three 1024 px images: a sketch render (hard edges and text: where filters differ most),
a gradient with noise (photo-like PNG statistics) and pure noise (the worst case for any filter).
Beside each filter's PSNR and SSIM (luminance, Gaussian window, Wang et al. 2004 constants) against
LANCZOS, it prints the same measures for LANCZOS + JPEG 90 against LANCZOS alone: a filter whose
difference is smaller than the JPEG's own loses nothing the MLLM would have seen.

    python benchmarks/mllm_resize.py [--side 768] [--size 1024]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.throughput import photo_like  # noqa: E402


def sketch(size: int):
    from mllm_guidance.backends.generator import GenerationRequest
    from mllm_guidance.backends.sketch import SketchGenerator
    from mllm_guidance.layout import Layout

    layout = Layout.from_pairs([("a man sitting", [0.05, 0.5, 0.45, 0.95]), ("a tree", [0.35, 0.05, 0.95, 0.9]),
                                ("a bird", [0.6, 0.15, 0.75, 0.3])])
    request = GenerationRequest(prompt="A man under a tree, a bird in it.", layout=layout, seed=0, width=size, height=size)
    return SketchGenerator().generate(request).image


def luminance(image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float64)


def psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def ssim(a, b) -> float:
    from scipy.ndimage import gaussian_filter

    x, y = luminance(a), luminance(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = gaussian_filter(x, 1.5), gaussian_filter(y, 1.5)
    vx, vy = gaussian_filter(x * x, 1.5) - mx * mx, gaussian_filter(y * y, 1.5) - my * my
    cxy = gaussian_filter(x * y, 1.5) - mx * my
    return float(np.mean(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))))


def cpu_ms(fn, n: int = 10) -> float:
    fn()
    started = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - started) / n * 1000


def main() -> None:
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=768)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    images = {"sketch": sketch(args.size), "photo-like": photo_like(args.size),
              "noise": Image.effect_noise((args.size, args.size), 64).convert("RGB")}
    target = (args.side, args.side)
    print(f"{args.size} px -> {args.side} px; PSNR (dB) / SSIM against LANCZOS; CPU ms per resize")
    print(f"{'image':>10} {'filter':>16} {'PSNR':>7} {'SSIM':>7} {'cpu ms':>7}")
    for name, image in images.items():
        reference = image.resize(target, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        reference.save(buf, format="JPEG", quality=90)
        jpeg = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        print(f"{name:>10} {'LANCZOS+JPEG 90':>16} {psnr(jpeg, reference):>7.1f} {ssim(jpeg, reference):>7.4f} {'':>7}")
        for f in ("BICUBIC", "BILINEAR", "BOX", "NEAREST"):
            resample = getattr(Image.Resampling, f)
            out = image.resize(target, resample)
            print(f"{name:>10} {f:>16} {psnr(out, reference):>7.1f} {ssim(out, reference):>7.4f} "
                  f"{cpu_ms(lambda im=image, r=resample: im.resize(target, r)):>7.1f}")
        lanczos = cpu_ms(lambda im=image: im.resize(target, Image.Resampling.LANCZOS))
        print(f"{name:>10} {'LANCZOS':>16} {'':>7} {'':>7} {lanczos:>7.1f}")


if __name__ == "__main__":
    main()
