"""Region repair: which part of an image a new layout must repaint, and keeping the rest exactly.

After align, the layout diff (``Layout.diff``: added, removed, moved, resized, redescribed objects)
decides the repair mask: the union of the old and the new box of every changed object, each
dilated by ``margin`` (a fraction of the image side, default ``DEFAULT_MARGIN``) so that the seam,
shadows and the object's surroundings are repainted too. The mask is a union of rectangles, kept as
normalized boxes (``RepairPlan.boxes``): exact, small enough for state, and drawn over the image by
the report.

A backend with a repair path (``supports_repair``) repaints the mask grounded on the new layout by
blended-latent inpainting (Avrahami et al., "Blended Latent Diffusion", SIGGRAPH 2023; diffusers'
``StableDiffusionInpaintPipeline`` does the same for 4-channel UNets): at every step the latents
outside the mask are replaced by the original image's latents noised to that step. The latent mask
covers every 8 x 8 cell that a mask pixel touches (``latent_mask``); ``composite`` then pastes the
original's pixels outside the pixel mask over the result, so they are identical, not merely close
(the VAE round trip would change them slightly).

``auto`` repairs when the mask covers less than ``DEFAULT_MAX_SHARE`` of the image, else renders
anew: past half the image a repair keeps little of what was right and the seams cost more than
they save. A repair runs every denoising step over the whole latent (plus one VAE encode), so it
costs about what a full render costs; what it buys is that the objects outside the mask stay as
they were judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mllm_guidance.layout import Box, Layout, LayoutDiff

#: Dilation of each changed box on every side, as a fraction of the image side: 0.05 is 26 px at
#: 512 and 51 px at 1024, about six latent cells: room for the object's edge and its shadow.
DEFAULT_MARGIN = 0.05
#: ``auto`` repairs when the mask covers less than this share of the image.
DEFAULT_MAX_SHARE = 0.5
#: Latent cells are this many pixels on a side (SD, SDXL, FLUX VAEs downsample by 8).
LATENT_CELL = 8


@dataclass(frozen=True)
class RepairPlan:
    """The mask of one repair: dilated boxes (normalized), their share of the image, and what changed."""

    boxes: list[list[float]]
    share: float
    changed: list[str]
    diff: str


@dataclass(frozen=True)
class RepairInput:
    """What a generator needs to repair instead of render: the image to keep outside the mask and
    the mask as normalized boxes. ``key`` says which repairs may share a batch (same base, same mask)."""

    image: Any  # PIL RGB, the request's size
    boxes: tuple[tuple[float, float, float, float], ...]
    key: str = ""


def changed_objects(diff: LayoutDiff) -> list[str]:
    """One line per changed object, e.g. ``moved: a cat``."""
    out = [f"added: {o.name}" for o in diff.added]
    out += [f"removed: {o.name}" for o in diff.removed]
    out += [f"moved: {b.name}" for _, b in diff.moved]
    out += [f"redescribed: {a.name} -> {b.name}" for a, b in diff.renamed]
    return out


def changed_boxes(diff: LayoutDiff) -> list[Box]:
    """The old and the new box of every changed object."""
    boxes = [o.box for o in diff.added] + [o.box for o in diff.removed]
    for a, b in diff.moved + diff.renamed:
        boxes += [a.box, b.box]
    return boxes


def dilate(box: Box, margin: float) -> list[float]:
    return [max(0.0, box.x1 - margin), max(0.0, box.y1 - margin), min(1.0, box.x2 + margin), min(1.0, box.y2 + margin)]


def plan_repair(old: Layout, new: Layout, *, margin: float = DEFAULT_MARGIN, tolerance: float = 0.01) -> RepairPlan:
    """The repair mask for going from ``old`` (the layout of the image to repair) to ``new``."""
    diff = old.diff(new, tolerance)
    boxes = [dilate(b, margin) for b in changed_boxes(diff)]
    return RepairPlan(boxes=boxes, share=union_share(boxes), changed=changed_objects(diff), diff=diff.summary())


def union_share(boxes: list[list[float]]) -> float:
    """The share of the unit square the union of ``boxes`` covers (exact, by coordinate compression)."""
    if not boxes:
        return 0.0
    xs = sorted({v for b in boxes for v in (b[0], b[2])})
    ys = sorted({v for b in boxes for v in (b[1], b[3])})
    area = 0.0
    for x1, x2 in zip(xs, xs[1:], strict=False):
        for y1, y2 in zip(ys, ys[1:], strict=False):
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            if any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in boxes):
                area += (x2 - x1) * (y2 - y1)
    return round(area, 6)


def pixel_rect(box: tuple[float, ...] | list[float], width: int, height: int, cell: int = 1) -> tuple[int, int, int, int]:
    """The pixel (or, with ``cell``, cell) rectangle ``[x1, y1, x2)`` a normalized box touches: the
    start rounded down, the end up, so the rectangle covers the whole box."""
    import math

    x1, y1 = math.floor(box[0] * width + 1e-9), math.floor(box[1] * height + 1e-9)
    x2, y2 = math.ceil(box[2] * width - 1e-9), math.ceil(box[3] * height - 1e-9)
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    if cell > 1:
        x1, y1, x2, y2 = x1 // cell, y1 // cell, -(-x2 // cell), -(-y2 // cell)
    return x1, y1, x2, y2


def pixel_mask(boxes: Any, size: tuple[int, int]) -> Any:
    """The mask as a PIL ``L`` image of ``size``: 255 inside the union of ``boxes``, 0 outside."""
    from PIL import Image, ImageDraw

    width, height = size
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    for box in boxes:
        x1, y1, x2, y2 = pixel_rect(box, width, height)
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=255)
    return mask


def latent_mask(boxes: Any, width: int, height: int, cell: int = LATENT_CELL) -> Any:
    """A ``1 x 1 x h x w`` float tensor over the latent grid: 1 on every cell a mask pixel touches
    (so it covers the pixel mask), 0 elsewhere. Imports torch: backends only."""
    import torch

    h, w = height // cell, width // cell
    mask = torch.zeros(1, 1, h, w)
    for box in boxes:
        x1, y1, x2, y2 = pixel_rect(box, width, height, cell)
        mask[..., y1:min(y2, h), x1:min(x2, w)] = 1.0
    return mask


def composite(repainted: Any, original: Any, boxes: Any) -> Any:
    """``repainted`` inside the mask, ``original``'s exact pixels outside it."""
    from PIL import Image

    original = original.convert("RGB")
    repainted = repainted.convert("RGB")
    if repainted.size != original.size:
        repainted = repainted.resize(original.size)
    return Image.composite(repainted, original, pixel_mask(boxes, original.size))
