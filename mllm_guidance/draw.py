"""Drawing layouts: boxes and labels on an image. Used by the sketch generator and the overlays.

Any image mode is drawn on (as RGB), and a label the font cannot encode is drawn with its
unencodable characters replaced rather than failing the overlay.
"""

from __future__ import annotations

import textwrap
from typing import Any

from mllm_guidance.images import to_rgb
from mllm_guidance.layout import Layout
from mllm_guidance.redact import redact_text

PALETTE = [
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (128, 128, 0), (0, 128, 128), (170, 110, 40),
]


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def draw_layout(image: Any, layout: Layout | None, *, filled: bool = False) -> Any:
    """A copy of ``image`` with every box outlined (and lightly filled) and labelled."""
    from PIL import Image, ImageDraw

    base = to_rgb(image).convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    w, h = base.size
    line = max(2, round(min(w, h) / 160))
    font = _font(max(10, round(min(w, h) / 32)))
    objects = list(enumerate(layout.objects if layout else []))
    # largest first, so that small objects stay visible on top of the ones around them
    for i, obj in sorted(objects, key=lambda item: -item[1].box.area):
        color = PALETTE[i % len(PALETTE)]
        x1, y1, x2, y2 = obj.box.to_pixels(w, h)
        draw.rectangle(
            [x1, y1, x2 - 1, y2 - 1],
            outline=color + (255,),
            fill=color + ((70,) if filled else (0,)),
            width=line,
        )
        name = redact_text(obj.name)  # pixels are a sink too; masked before it is cut short
        label = _drawable(name if len(name) <= 40 else name[:37] + "...", font)
        tb = draw.textbbox((0, 0), label, font=font)
        tw, th = tb[2] - tb[0], tb[3] - tb[1]
        ty = y1 if y1 + th + 4 <= h else max(0, y2 - th - 4)
        tx = max(0, min(x1, w - tw - 6))
        draw.rectangle([tx, ty, min(w, tx + tw + 6), ty + th + 4], fill=color + (220,))
        draw.text((tx + 3, ty + 2 - tb[1]), label, fill=(255, 255, 255, 255), font=font)
    return Image.alpha_composite(base, overlay).convert("RGB")


def draw_caption(image: Any, text: str) -> Any:
    """``image`` with ``text`` wrapped across its middle: a preview for a render with no layout."""
    from PIL import ImageDraw

    out = to_rgb(image).copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    font = _font(max(10, round(min(w, h) / 24)))
    wrapped = _drawable(textwrap.fill(redact_text(text), width=max(10, w // max(6, round(min(w, h) / 40)))), font)
    tb = draw.multiline_textbbox((0, 0), wrapped, font=font)
    draw.multiline_text(((w - (tb[2] - tb[0])) / 2, (h - (tb[3] - tb[1])) / 2), wrapped, fill=(40, 40, 40), font=font)
    return out


def _drawable(text: str, font: Any) -> str:
    """``text`` if the font can render it, else with the characters it cannot encode replaced
    (Pillow's bitmap fallback font only knows Latin-1)."""
    try:
        font.getbbox(text)
        return text
    except (UnicodeError, ValueError):
        return text.encode("latin-1", "replace").decode("latin-1")
