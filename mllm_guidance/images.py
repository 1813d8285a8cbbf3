"""What the project takes from a generator: a non-empty image, stored as 8-bit RGB.

Generators (ours, third parties', a user's callable) may return any PIL mode: CMYK, 16-bit
greyscale, float (``F``) or 32-bit (``I``) arrays, palettes, images with transparency. PNG cannot
hold some of them and the MLLM should always see the same kind of picture, so every image is
turned into RGB once, when it is saved; transparent parts land on white. An image with no pixels
or an object that is not an image is a clear ``BackendError``, not a crash inside Pillow.

``check_image`` tells the generate node what a user should know about an image before it is
saved: a size other than the one asked for, and a mode that had to be converted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from mllm_guidance.errors import BackendError

#: JPEG quality of images sent to the MLLM: no artefacts a judge would score, a fifth of PNG's bytes.
MODEL_JPEG_QUALITY = 90


@dataclass(frozen=True)
class ModelImage:
    """An image as an MLLM request carries it: encoded bytes and their MIME type."""

    data: bytes
    mime_type: str


def encode_for_model(image: Any, image_format: str) -> ModelImage:
    """``image`` (RGB) as JPEG (default) or PNG bytes for an MLLM request."""
    buf = io.BytesIO()
    if image_format == "png":
        image.save(buf, format="PNG", compress_level=1)
        return ModelImage(buf.getvalue(), "image/png")
    image.save(buf, format="JPEG", quality=MODEL_JPEG_QUALITY)
    return ModelImage(buf.getvalue(), "image/jpeg")

#: Modes whose extra band is an alpha channel (premultiplied for the lower-case ones).
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def to_rgb(image: Any) -> Any:
    """``image`` as an 8-bit RGB PIL image (the image itself when it already is one)."""
    _check_usable(image)
    mode = image.mode
    if mode == "RGB":
        return image
    from PIL import Image

    try:
        if mode == "F":
            image = _float_to_8bit(image)
        elif mode.startswith("I;16"):
            image = image.convert("I").point(lambda v: v * (1 / 257)).convert("L")
        if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
            rgba = image.convert("LA" if mode == "La" else "RGBA").convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise BackendError(
            f"the generator returned an image in mode {mode}, which cannot be turned into RGB: {exc}"
        ) from None


def check_image(image: Any, expected_size: tuple[int, int] | None) -> list[str]:
    """Notes on a generated image for the round's record: a size other than ``expected_size``
    (width, height) and a mode that will be converted when it is saved. Raises ``BackendError``
    for something that is not an image or has no pixels."""
    _check_usable(image)
    notes: list[str] = []
    if expected_size is not None and tuple(image.size) != tuple(expected_size):
        w, h = expected_size
        notes.append(
            f"the generator returned a {image.width}x{image.height} image, not the {w}x{h} asked "
            "for; boxes are drawn and judged on the image as returned"
        )
    if image.mode != "RGB":
        notes.append(f"the generator returned an image in mode {image.mode}; it was saved as RGB" + _how(image))
    return notes


def _check_usable(image: Any) -> None:
    if not all(hasattr(image, a) for a in ("mode", "size", "convert")):
        raise BackendError(
            f"the generator returned {type(image).__name__}, not a PIL image; return a "
            "PIL.Image.Image (e.g. Image.fromarray(array))"
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        raise BackendError(f"the generator returned an empty {width}x{height} image")


def _float_to_8bit(image: Any) -> Any:
    """Float pixels: 0..1 (what most array code makes) scaled to 0..255, anything else clipped."""
    low, high = image.getextrema()
    if 0.0 <= low and high <= 1.0:
        image = image.point(lambda v: v * 255)
    return image.convert("L")


def _how(image: Any) -> str:
    if image.mode in _ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        return " on a white background"
    if image.mode == "F":
        low, high = image.getextrema()
        return " (float values in 0..1 scaled to 0..255)" if 0.0 <= low and high <= 1.0 else " (values clipped to 0..255)"
    if image.mode.startswith("I;16"):
        return " (16-bit values scaled to 8 bits)"
    if image.mode == "I":
        return " (values clipped to 0..255)"
    return ""
