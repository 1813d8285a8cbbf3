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
#: ISA-L deflate level for PNG files (``png_file``): 0-3, all far faster than zlib's level 1.
PNG_ISAL_LEVEL = 2
#: JPEG quality of round images kept as JPEG (``round_format="jpeg"``): visually lossless.
ROUND_JPEG_QUALITY = 95
#: How a round image may be stored, by file extension: PNG and WebP are lossless, JPEG is not.
FILE_FORMATS = {".png": "PNG", ".webp": "WEBP", ".jpg": "JPEG"}
#: The resampling filter of the MLLM's copy. Measured against LANCZOS at 1024 -> 768 px
#: (``benchmarks/mllm_resize.py``): BILINEAR (Pillow's, antialiased on downscaling) differs by less
#: than the JPEG the MLLM gets anyway, for half of LANCZOS's time.
MODEL_RESAMPLE = "BILINEAR"


@dataclass(frozen=True)
class ModelImage:
    """An image as an MLLM request carries it: encoded bytes and their MIME type."""

    data: bytes
    mime_type: str


def encode_file(image: Any, suffix: str) -> bytes:
    """``image`` (RGB) encoded for a file named ``*suffix``: PNG, lossless WebP or JPEG (quality 95)."""
    buf = io.BytesIO()
    kind = FILE_FORMATS[suffix]
    if kind == "PNG":
        return png_file(image)
    if kind == "WEBP":
        # method 1, quality 0: about half the PNG's bytes on renders, for several times its CPU
        # (``benchmarks/png_encode.py``); method 0 saves little over PNG
        image.save(buf, format="WEBP", lossless=True, quality=0, method=1)
    else:
        image.save(buf, format="JPEG", quality=ROUND_JPEG_QUALITY)
    return buf.getvalue()


def downscale_for_model(image: Any, max_side: int) -> Any:
    """``image`` with its longest side at most ``max_side`` (``MODEL_RESAMPLE``; unchanged when small)."""
    if max(image.size) <= max_side:
        return image
    from PIL import Image

    scale = max_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, getattr(Image.Resampling, MODEL_RESAMPLE))


def encode_for_model(image: Any, image_format: str) -> ModelImage:
    """``image`` (RGB) as JPEG (default) or PNG bytes for an MLLM request."""
    buf = io.BytesIO()
    if image_format == "png":
        return ModelImage(png_file(image), "image/png")
    image.save(buf, format="JPEG", quality=MODEL_JPEG_QUALITY)
    return ModelImage(buf.getvalue(), "image/jpeg")


def png_file(image: Any) -> bytes:
    """``image`` as an RGB PNG file (``to_rgb``), about five times faster than Pillow's fastest setting.

    Pillow spends half of a 1024 px encode choosing a filter for each row and the other half in
    zlib. Here every row takes the Up filter (the difference to the row above: what adaptive
    filtering picks for most rows of a photograph), computed by Pillow in C, and the deflate
    stream is ISA-L's (``isal``), a standard zlib stream made several times faster than zlib's
    level 1. At 1024 px: 3-14 ms instead of 10-68 ms; on smooth renders the file is smaller than
    Pillow's, on pure noise larger (``benchmarks/png_encode.py``)."""
    import struct
    import zlib

    from isal import isal_zlib
    from PIL import Image, ImageChops

    image = to_rgb(image)
    width, height = image.size
    above = Image.new("RGB", image.size)
    above.paste(image.crop((0, 0, width, height - 1)), (0, 1))
    rows = ImageChops.subtract_modulo(image, above).tobytes()
    stride = 3 * width
    scanlines = b"".join(b"\x02" + rows[y * stride:(y + 1) * stride] for y in range(height))

    def chunk(kind: bytes, data: bytes) -> list[bytes]:
        return [struct.pack(">I", len(data)), kind, data, struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))]

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"".join([b"\x89PNG\r\n\x1a\n", *chunk(b"IHDR", header),
                     *chunk(b"IDAT", isal_zlib.compress(scanlines, PNG_ISAL_LEVEL)), *chunk(b"IEND", b"")])


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
