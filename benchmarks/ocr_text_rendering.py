"""The text-rendering scorer's reader on its real weights (RapidOCR, PP-OCRv4, CPU): seconds per image
and how often it reads clean, Pillow-drawn text back exactly, by font size. This is the reader's
floor: generated text is harder (perspective, texture, stylised letters).

    python benchmarks/ocr_text_rendering.py [--size 1024] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHRASES = ["OPEN DAILY", "Fresh Coffee 24h", "SUMMER SALE", "The Impact of 5G Technology", "Welcome Home",
           "NO PARKING", "Global Health Survey 2025", "Mental Health Awareness", "Bakery & Cafe", "EXIT"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels")
    parser.add_argument("--threads", type=int, default=2, help="OMP threads for onnxruntime")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from PIL import Image, ImageDraw, ImageFont

    from mllm_guidance.eval.scorers import ScoreItem
    from mllm_guidance.eval.text_rendering import TextRenderingScorer

    started = time.perf_counter()
    scorer = TextRenderingScorer()
    print(f"engine load: {time.perf_counter() - started:.2f} s")
    print("font px | phrases | exact | word accuracy | s / image")
    for font_size in (24, 32, 40, 48, 64, 96):
        font = ImageFont.load_default(size=font_size)
        items = []
        for phrase in PHRASES:
            image = Image.new("RGB", (args.size, args.size), "white")
            draw = ImageDraw.Draw(image)
            if draw.textlength(phrase, font=font) > args.size * 7 / 8:
                continue  # it would run off the image: not a reading error
            draw.text((args.size // 16, args.size // 3), phrase, fill="black", font=font)
            items.append(ScoreItem(f'a sign that says "{phrase}"', image))
        t = time.perf_counter()
        results = scorer.score(items)
        seconds = (time.perf_counter() - t) / len(items)
        exact = sum(r["text_exact"] for r in results) / len(results)
        wac = sum(r["text_word_accuracy"] for r in results) / len(results)
        print(f"{font_size:7d} | {len(items):7d} | {exact:5.2f} | {wac:13.2f} | {seconds:.3f}")


if __name__ == "__main__":
    main()
