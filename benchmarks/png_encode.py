"""What storing one round image costs: CPU-ms and MB per 1024 px image, per format.

Pillow's PNG at zlib level 1 (what the store used before issue 25), the store's own PNG
(``images.png_file``: Up filter, ISA-L deflate), lossless WebP and JPEG 95 (``--round-format``),
on four synthetic images: smooth (blurred colour noise with fine grain: closest to a diffusion
render), photo-like (a gradient with strong noise: the throughput benchmark's image), a sketch render
and pure grey noise (the overhead benchmark's worst case). Every lossless encoding is decoded and
checked equal to the original.

    python benchmarks/png_encode.py [--size 1024]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.mllm_resize import sketch  # noqa: E402
from benchmarks.throughput import photo_like  # noqa: E402
from mllm_guidance.images import encode_file, png_file  # noqa: E402


def smooth(size: int):
    from PIL import Image

    colour = Image.effect_noise((size // 16, size // 16), 80).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    return Image.blend(colour, Image.effect_noise((size, size), 12).convert("RGB"), 0.15)


def pillow_png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def cpu_ms(fn, image, n: int = 5) -> float:
    fn(image)
    started = time.process_time()
    for _ in range(n):
        fn(image)
    return (time.process_time() - started) / n * 1000


def main() -> None:
    from PIL import Image, ImageChops

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    images = {"smooth": smooth(args.size), "photo-like": photo_like(args.size), "sketch": sketch(args.size),
              "noise": Image.effect_noise((args.size, args.size), 64).convert("RGB")}
    encoders = {"Pillow PNG l1": (pillow_png, True), "store PNG": (png_file, True),
                "WebP lossless": (lambda im: encode_file(im, ".webp"), True), "JPEG 95": (lambda im: encode_file(im, ".jpg"), False)}
    print(f"{args.size} px RGB; CPU ms per encode, MB per file")
    print(f"{'image':>10} " + " ".join(f"{name:>22}" for name in encoders))
    for name, image in images.items():
        cells = []
        for encode, lossless in encoders.values():
            data = encode(image)
            if lossless:
                back = Image.open(io.BytesIO(data)).convert("RGB")
                assert ImageChops.difference(back, image).getbbox() is None, "lossless encoding changed pixels"
            cells.append(f"{cpu_ms(encode, image):>8.1f} ms {len(data) / 1e6:>6.2f} MB")
        print(f"{name:>10} " + " ".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
