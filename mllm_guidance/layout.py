"""Layouts: named boxes in ONE convention, normalized corners ``[x1, y1, x2, y2]``, origin top-left.

(0, 0) is the top-left corner of the image and (1, 1) the bottom-right one. Every other format
(x/y/w/h, pixels, 0..1000 scales) is converted at the edges of the project: the answer parser and
the generator backends. A ``Box`` is always valid: finite, ordered, inside [0, 1]. Values that are
slightly off are fixed only by ``Box.repair``, which says what it changed, so a repair is never silent.

The thesis's layout rules (minimum size 0.1 x 0.1, no box more than half covered by another) are
checked by ``Layout.rule_warnings`` and reported, never enforced: the MLLM is asked to respect them
and the align step deliberately overlaps interacting objects.

Layouts come from MLLM answers, so they are bounded and cleaned here, once for every way in:
at most ``MAX_OBJECTS`` objects, and names without control characters, terminal escape codes,
bidi overrides or lone surrogates (which would reach a terminal, a report or a UTF-8 log as is).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Smallest side the thesis's prompts allow, as a fraction of the image side.
MIN_SIDE = 0.1
#: Largest fraction of a box that may lie inside another box under the thesis's rules.
MAX_COVERED = 0.5
#: Default tolerance (max absolute coordinate difference) under which two boxes count as equal.
DEFAULT_TOLERANCE = 0.01

#: Most objects one layout may hold. The thesis's scenes have 3-4 objects, benchmark prompts
#: rarely more than 10, and GLIGEN's position net holds 30 (backends keep the 30 largest); 64 is
#: twice that, so no real answer comes near it. The cap is what keeps every pairwise step cheap
#: and bounded: rule checks, layout matching and diffs touch at most 64 x 64 pairs, in
#: milliseconds, where an answer of 1,000 identical objects used to take a minute and overflow
#: the stack.
MAX_OBJECTS = 64
#: Longest object description (characters); CLIP-based generators read only 77 tokens anyway.
MAX_NAME_CHARS = 2000
#: Most rule warnings listed for one layout; the rest are counted in one closing line, so a
#: crowded layout cannot fill the run directory with warnings (200 stacked boxes made 40,000).
MAX_WARNINGS = 20

_EPS = 1e-9


class Box(BaseModel):
    """A normalized box ``[x1, y1, x2, y2]``; corners ordered, all values in [0, 1]."""

    model_config = ConfigDict(frozen=True)

    x1: float
    y1: float
    x2: float
    y2: float

    @field_validator("x1", "y1", "x2", "y2")
    @classmethod
    def _finite_and_inside(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"box coordinate {value!r} is not a finite number")
        if value < 0.0 or value > 1.0:
            raise ValueError(
                f"box coordinate {value!r} is outside [0, 1]; use Box.repair to clamp it"
            )
        return float(value)

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if not (self.x1 < self.x2 and self.y1 < self.y2):
            raise ValueError(
                f"box corners are not ordered (need x1 < x2 and y1 < y2): {self.as_list()}"
            )
        return self

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def of(cls, values: Sequence[float]) -> Box:
        """Box from a ``[x1, y1, x2, y2]`` sequence (strict: no repair)."""
        x1, y1, x2, y2 = _four(values)
        return cls(x1=x1, y1=y1, x2=x2, y2=y2)

    @classmethod
    def repair(cls, values: Sequence[float], label: str = "box") -> tuple[Box, list[str]]:
        """Clamp corners into [0, 1] and say what was changed.

        Raises ``ValueError`` for what cannot be repaired without guessing: non-finite values,
        corners out of order, or a box that is empty once clamped.
        """
        x1, y1, x2, y2 = _four(values)
        for v in (x1, y1, x2, y2):
            if not math.isfinite(v):
                raise ValueError(f"{label}: coordinate {v!r} is not a finite number")
        if not (x1 < x2 and y1 < y2):
            raise ValueError(
                f"{label}: corners are not ordered (need x1 < x2 and y1 < y2): "
                f"{[x1, y1, x2, y2]}"
            )
        clamped = [min(1.0, max(0.0, v)) for v in (x1, y1, x2, y2)]
        notes: list[str] = []
        if clamped != [x1, y1, x2, y2]:
            notes.append(
                f"{label}: clamped {_fmt([x1, y1, x2, y2])} into [0, 1] as {_fmt(clamped)}"
            )
        if not (clamped[0] < clamped[2] and clamped[1] < clamped[3]):
            raise ValueError(f"{label}: box {_fmt([x1, y1, x2, y2])} lies outside the image")
        return cls.of(clamped), notes

    @classmethod
    def from_xywh(cls, values: Sequence[float]) -> Box:
        """Box from normalized ``[x, y, width, height]`` (top-left corner plus size)."""
        x, y, w, h = _four(values)
        return cls.of([x, y, x + w, y + h])

    @classmethod
    def from_pixels(cls, values: Sequence[float], width: int, height: int) -> Box:
        """Box from pixel corners ``[x1, y1, x2, y2]`` on a ``width`` x ``height`` image."""
        x1, y1, x2, y2 = _four(values)
        return cls.of([x1 / width, y1 / height, x2 / width, y2 / height])

    # -- conversion ---------------------------------------------------------------------------

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]

    def to_xywh(self) -> list[float]:
        """Normalized ``[x, y, width, height]``."""
        return [self.x1, self.y1, self.x2 - self.x1, self.y2 - self.y1]

    def to_pixels(self, width: int, height: int) -> list[int]:
        """Pixel corners, rounded to the nearest pixel, never empty."""
        x1 = min(width - 1, round(self.x1 * width))
        y1 = min(height - 1, round(self.y1 * height))
        x2 = max(x1 + 1, round(self.x2 * width))
        y2 = max(y1 + 1, round(self.y2 * height))
        return [x1, y1, x2, y2]

    # -- geometry -----------------------------------------------------------------------------

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return self.width * self.height

    def intersection(self, other: Box) -> float:
        w = min(self.x2, other.x2) - max(self.x1, other.x1)
        h = min(self.y2, other.y2) - max(self.y1, other.y1)
        return w * h if w > 0 and h > 0 else 0.0

    def iou(self, other: Box) -> float:
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def covered_by(self, other: Box) -> float:
        """Fraction of this box's area that lies inside ``other`` (0..1)."""
        return self.intersection(other) / self.area

    def distance(self, other: Box) -> float:
        """Largest absolute difference between corresponding coordinates."""
        return max(abs(a - b) for a, b in zip(self.as_list(), other.as_list(), strict=True))

    def __str__(self) -> str:
        return _fmt(self.as_list())


class LayoutObject(BaseModel):
    """One object of a layout: a description (``a jumping pink dolphin``) and its box."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    box: Box

    @field_validator("name", mode="before")
    @classmethod
    def _clean_name(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = clean_name(value)
        if not value:
            raise ValueError("object name is empty")
        return value

    def __str__(self) -> str:
        return f"{self.name} {self.box}"


class LayoutDiff(BaseModel):
    """What changed from one layout to the next: for traces and reports."""

    added: list[LayoutObject] = []
    removed: list[LayoutObject] = []
    moved: list[tuple[LayoutObject, LayoutObject]] = []
    renamed: list[tuple[LayoutObject, LayoutObject]] = []

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.moved or self.renamed)

    def summary(self) -> str:
        """One short line, e.g. ``+1 added (bird); 1 moved (green car)``."""
        if self.is_empty:
            return "unchanged"
        parts = []
        if self.added:
            parts.append(f"+{len(self.added)} added ({_names(self.added)})")
        if self.removed:
            parts.append(f"-{len(self.removed)} removed ({_names(self.removed)})")
        if self.moved:
            parts.append(f"{len(self.moved)} moved ({_names(b for _, b in self.moved)})")
        if self.renamed:
            pairs = _listed([f"{_cut(a.name)} -> {_cut(b.name)}" for a, b in self.renamed])
            parts.append(f"{len(self.renamed)} redescribed ({pairs})")
        return "; ".join(parts)


class Layout(BaseModel):
    """An ordered list of objects; ``repairs`` records every fix applied while building it."""

    model_config = ConfigDict(frozen=True)

    objects: list[LayoutObject] = Field(default=[], max_length=MAX_OBJECTS)
    repairs: list[str] = Field(
        default=[], description="What was changed to make the boxes valid (clamps, format reads)."
    )

    @classmethod
    def from_pairs(
        cls,
        pairs: Iterable[tuple[str, Sequence[float]]],
        *,
        box_format: str = "xyxy",
        repairs: Iterable[str] = (),
    ) -> Layout:
        """Build a layout from ``(name, numbers)`` pairs, repairing what can be repaired.

        ``box_format`` is ``"xyxy"`` (normalized corners) or ``"xywh"`` (top-left plus size).
        Raises ``ValueError`` naming the object when a box cannot be used.
        """
        if box_format not in ("xyxy", "xywh"):
            raise ValueError(f"unknown box format {box_format!r}: use 'xyxy' or 'xywh'")
        pairs = list(pairs)
        if len(pairs) > MAX_OBJECTS:
            raise ValueError(too_many_objects(len(pairs)))
        notes = list(repairs)
        objects = []
        for name, values in pairs:
            x1, y1, a, b = _four(values)
            corners = [x1, y1, x1 + a, y1 + b] if box_format == "xywh" else [x1, y1, a, b]
            box, fixed = Box.repair(corners, label=repr(name.strip() or "?"))
            notes.extend(fixed)
            objects.append(LayoutObject(name=name, box=box))
        return cls(objects=objects, repairs=notes)

    # -- basic views --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.objects)

    def __iter__(self):  # type: ignore[override]
        return iter(self.objects)

    @property
    def is_empty(self) -> bool:
        return not self.objects

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objects]

    def to_lines(self) -> str:
        """The text form the prompts use: one ``- name [x1, y1, x2, y2]`` line per object."""
        return "\n".join(f"- {o}" for o in self.objects)

    def largest(self, n: int) -> Layout:
        """The ``n`` objects with the largest boxes, in their original order."""
        if len(self.objects) <= n:
            return self
        keep = sorted(range(len(self.objects)), key=lambda i: -self.objects[i].box.area)[:n]
        return Layout(objects=[self.objects[i] for i in sorted(keep)], repairs=self.repairs)

    # -- the thesis's rules -------------------------------------------------------------------

    def rule_warnings(
        self,
        min_side: float = MIN_SIDE,
        max_covered: float = MAX_COVERED,
        limit: int = MAX_WARNINGS,
    ) -> list[str]:
        """Human-readable breaches of the layout rules the prompts ask for (never enforced).

        At most ``limit`` breaches are spelled out, then one line counts the rest; names are
        shortened, so the list stays small however crowded the layout is.
        """
        breaches: list[str] = []
        more = 0
        for o in self.objects:
            if o.box.width < min_side - _EPS or o.box.height < min_side - _EPS:
                if len(breaches) < limit:
                    breaches.append(
                        f"{_short(o.name)} is smaller than {min_side} x {min_side} "
                        f"({o.box.width:.3f} x {o.box.height:.3f})"
                    )
                else:
                    more += 1
        for i, a in enumerate(self.objects):
            for j, b in enumerate(self.objects):
                if i == j:
                    continue
                covered = a.box.covered_by(b.box)
                if covered <= max_covered + _EPS:
                    continue
                if len(breaches) < limit:
                    breaches.append(
                        f"{covered:.0%} of {_short(a.name)} lies inside {_short(b.name)} "
                        f"(the rules allow at most {max_covered:.0%})"
                    )
                else:
                    more += 1
        if more:
            breaches.append(f"... and {more} more breaches of the layout rules")
        return breaches

    # -- comparison ---------------------------------------------------------------------------

    def same_as(self, other: Layout, tolerance: float = DEFAULT_TOLERANCE) -> bool:
        """Same objects (descriptions equal up to case, spacing and a leading article) and boxes
        within ``tolerance``, in any order. This is the self-correct loop's stop test."""
        if len(self.objects) != len(other.objects):
            return False
        if sorted(_key(o.name) for o in self.objects) != sorted(_key(o.name) for o in other.objects):
            return False

        def ok(a: LayoutObject, b: LayoutObject) -> bool:
            return _key(a.name) == _key(b.name) and a.box.distance(b.box) <= tolerance

        pairs = _match(self.objects, other.objects, ok)
        return len(pairs) == len(self.objects)

    def diff(self, new: Layout, tolerance: float = DEFAULT_TOLERANCE) -> LayoutDiff:
        """Objects added, removed, moved (same description, other box) and redescribed (another
        description where the box stayed or still overlaps the old one by IoU >= 0.5)."""
        old_objs, new_objs = list(self.objects), list(new.objects)
        same = _match(
            old_objs,
            new_objs,
            lambda a, b: _key(a.name) == _key(b.name) and a.box.distance(b.box) <= tolerance,
        )
        old_left = [o for i, o in enumerate(old_objs) if i not in same]
        new_left = [o for j, o in enumerate(new_objs) if j not in same.values()]
        moved_idx = _match(old_left, new_left, lambda a, b: _key(a.name) == _key(b.name))
        moved = [(old_left[i], new_left[j]) for i, j in moved_idx.items()]
        old_left2 = [o for i, o in enumerate(old_left) if i not in moved_idx]
        new_left2 = [o for j, o in enumerate(new_left) if j not in moved_idx.values()]
        # a new description on (nearly) the same place: redescribed, even if the box moved a bit
        ren_idx = _match(
            old_left2, new_left2, lambda a, b: a.box.distance(b.box) <= tolerance or a.box.iou(b.box) >= 0.5
        )
        renamed = [(old_left2[i], new_left2[j]) for i, j in ren_idx.items()]
        return LayoutDiff(
            added=[o for j, o in enumerate(new_left2) if j not in ren_idx.values()],
            removed=[o for i, o in enumerate(old_left2) if i not in ren_idx],
            moved=moved,
            renamed=renamed,
        )


# -- helpers ----------------------------------------------------------------------------------

_ARTICLE = re.compile(r"^(a|an|the)\s+")
# terminal escape sequences: CSI (ESC [ ... final byte, or the one-byte C1 CSI), OSC (ESC ] ...
# ended by BEL, by ESC \ or by nothing), and the two-byte ESC forms
_ANSI = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*+[ -/]*+[@-~]?"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*+(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -~]?"
)
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# controls become a space when they separate words (tab, newline...), else disappear; the bidi
# embeddings, overrides and isolates (and the marks) can make a name display as another text
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_NAME_TABLE = {
    **{c: (" " if chr(c).isspace() else None) for c in range(0xA0) if unicodedata.category(chr(c)) == "Cc"},
    **{ord(c): None for c in _BIDI},
}


def clean_name(name: str) -> str:
    """``name`` safe to print, log and draw: terminal escape codes, control characters and bidi
    overrides removed, lone surrogates replaced by U+FFFD, whitespace collapsed."""
    if "\x1b" in name or "\x9b" in name or "\x9d" in name:
        name = _ANSI.sub("", name)
    name = _SURROGATE.sub("\ufffd", name.translate(_NAME_TABLE))
    return " ".join(name.split())


def too_many_objects(count: int) -> str:
    """The message for a layout over the cap, meant to be shown back to the MLLM."""
    return (
        f"the layout has {count} objects; at most {MAX_OBJECTS} are allowed: give one entry "
        "per object the prompt names"
    )


def _short(name: str, limit: int = 60) -> str:
    """A quoted name for messages, cut to ``limit`` characters."""
    return repr(_cut(name, limit))


@lru_cache(maxsize=4096)
def _key(name: str) -> str:
    """Comparison key of a description: case, spacing, end punctuation and a leading article
    do not make two descriptions different."""
    key = " ".join(name.casefold().split()).strip(" .,;:")
    return _ARTICLE.sub("", key)


def _four(values: Sequence[float]) -> tuple[float, float, float, float]:
    vals = list(values)
    if len(vals) != 4:
        raise ValueError(f"a box needs exactly 4 numbers, got {len(vals)}: {vals}")
    try:
        x1, y1, x2, y2 = (float(v) for v in vals)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a box needs 4 numbers, got {vals}") from exc
    return x1, y1, x2, y2


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}".rstrip("0").rstrip(".") if v else "0" for v in values) + "]"


def _names(objects: Iterable[LayoutObject]) -> str:
    return _listed([_cut(o.name) for o in objects])


def _listed(items: list[str], limit: int = 8) -> str:
    """``a, b, c``; past ``limit`` items the rest are counted, so a summary stays one short line."""
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown}, +{len(items) - limit} more"


def _cut(name: str, limit: int = 60) -> str:
    return name if len(name) <= limit else name[: limit - 3] + "..."


def _match(left: list[Any], right: list[Any], ok: Callable[[Any, Any], bool]) -> dict[int, int]:
    """Maximum one-to-one matching (left index -> right index) under ``ok`` (Kuhn's algorithm).

    Unlike a greedy pass it never misses a matching that exists. Layouts hold at most
    ``MAX_OBJECTS`` objects, so the pair table (``ok`` called once per pair) and the augmenting
    searches stay in milliseconds; a greedy first pass settles the usual case (identical or
    clearly distinct objects) at once, and the search keeps its own stack, so no layout can
    reach Python's recursion limit.
    """
    adjacent = [[j for j, b in enumerate(right) if ok(a, b)] for a in left]
    owner: dict[int, int] = {}  # right index -> left index
    matched: dict[int, int] = {}  # left index -> right index
    for i, options in enumerate(adjacent):  # greedy start
        for j in options:
            if j not in owner:
                owner[j], matched[i] = i, j
                break
    for start in range(len(left)):
        if start in matched:
            continue
        _augment(start, adjacent, owner, matched)
    return dict(matched)


def _augment(start: int, adjacent: list[list[int]], owner: dict[int, int], matched: dict[int, int]) -> None:
    """One depth-first search for an augmenting path from ``start``, with an explicit stack."""
    seen: set[int] = set()
    # each frame: (left index, position in its options, right index reached through it)
    stack: list[list[int]] = [[start, 0, -1]]
    while stack:
        frame = stack[-1]
        i, k = frame[0], frame[1]
        options = adjacent[i]
        while k < len(options) and options[k] in seen:
            k += 1
        if k == len(options):
            stack.pop()
            continue
        j = options[k]
        frame[1], frame[2] = k + 1, j
        seen.add(j)
        if j not in owner:
            # free right vertex: flip the path held on the stack
            for left_i, _, right_j in stack:
                owner[right_j], matched[left_i] = left_i, right_j
            return
        stack.append([owner[j], 0, -1])
