"""Pictures drawn with PIL only: a table's bar chart and the ``train`` command's image grid."""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageDraw

_COLOURS = [(90, 90, 90), (66, 133, 244), (25, 80, 200), (219, 68, 55), (160, 30, 20),
            (15, 157, 88), (120, 190, 60), (244, 180, 0), (170, 110, 0)]


def table_plot(summary: dict[str, dict[str, dict[str, Any]]], table: Any, panel: tuple[int, int] = (240, 220)) -> Image.Image:
    """One panel per metric: a bar per row (our mean, a whisker of one std), the thesis's mean as a
    black tick where known. Each panel's axis spans its own values, so small differences show."""
    rows, metrics = list(summary), list(table.metrics)
    width, height = panel
    legend = 16 * len(rows) + 10
    img = Image.new("RGB", (width * len(metrics), height + legend), "white")
    draw = ImageDraw.Draw(img)
    for k, m in enumerate(metrics):
        x0 = k * width
        values = [summary[r][m]["mean"] for r in rows]
        stds = [summary[r][m]["std"] for r in rows]
        thesis = [table.thesis[r][k] for r in rows] if table.thesis else []
        lo = min([v - s for v, s in zip(values, stds)] + thesis)
        hi = max([v + s for v, s in zip(values, stds)] + thesis)
        lo, hi = lo - 0.1 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9)

        def y(v: float) -> float:
            return height - 20 - (v - lo) / (hi - lo) * (height - 45)

        draw.text((x0 + 8, 4), f"{m}  [{lo:.3g} .. {hi:.3g}]", fill="black")
        bar = (width - 20) / len(rows)
        for i, r in enumerate(rows):
            bx = x0 + 10 + i * bar
            draw.rectangle([bx + 2, y(values[i]), bx + bar - 2, height - 20], fill=_COLOURS[i % len(_COLOURS)])
            cx = bx + bar / 2
            draw.line([cx, y(values[i] - stds[i]), cx, y(values[i] + stds[i])], fill="black")
            if thesis:
                draw.line([bx, y(thesis[i]), bx + bar, y(thesis[i])], fill="black", width=3)
        draw.line([x0 + 8, height - 20, x0 + width - 8, height - 20], fill="black")
    for i, r in enumerate(rows):
        draw.rectangle([10, height + 4 + 16 * i, 22, height + 14 + 16 * i], fill=_COLOURS[i % len(_COLOURS)])
        draw.text((28, height + 2 + 16 * i), r + ("   (black tick: thesis)" if i == 0 and table.thesis else ""), fill="black")
    return img


def image_grid(rows: list[list[Any]], labels: list[str], cell: int = 28, scale: int = 2) -> Image.Image:
    """Rows of 28x28 images (arrays in [0, 1]) with a text label at the left of each row."""
    import numpy as np

    margin = 130
    cols = max(len(r) for r in rows)
    size = cell * scale
    img = Image.new("L", (margin + cols * (size + 2), len(rows) * (size + 2)), 255)
    draw = ImageDraw.Draw(img)
    for i, (row, label) in enumerate(zip(rows, labels)):
        draw.text((4, i * (size + 2) + size // 2 - 6), label, fill=0)
        for j, pic in enumerate(row):
            arr = (255 - np.clip(np.asarray(pic).reshape(cell, cell), 0, 1) * 255).astype("uint8")
            tile = Image.fromarray(arr, "L").resize((size, size), Image.NEAREST)
            img.paste(tile, (margin + j * (size + 2), i * (size + 2)))
    return img
