"""Reading layouts and scores out of what real MLLMs write.

Answers come wrapped in prose and markdown, as Python-ish lists with stray quotes
(``'a bottle [0.46, 0.742, 0.723, 0.821']]``), as bullets, as JSON, with ``.5`` decimals, in
pixels or on a 0..1000 scale, and sometimes as ``[x, y, width, height]``. The parsers accept all
of that and turn it into the project's one convention, recording every reinterpretation in
``Layout.repairs``. Anything they cannot read without guessing raises ``LayoutParseError`` or
``ScoreParseError`` with a message meant to be shown back to the MLLM, never another exception.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from mllm_guidance.errors import LayoutParseError, ScoreParseError
from mllm_guidance.layout import Layout

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(rf"^{_NUM}$")
_GROUP_RE = re.compile(r"[\[(]([^\[\]()]*)[\])]")
_HEADER_RE = re.compile(
    r"(?i)(?P<kind>updated\s+objects|updated\s+layout|current\s+(?:output\s+)?objects|objects|layout)"
    r"[\s*_`]*(?:section)?[\s*_`]*:"
)
_STOP_RE = re.compile(
    r"(?im)^[\s#>*_`-]*(?:reasoning|score|user\s+prompt|explanation|justification|note|notes)"
    r"[\s*_`]*:"
)
_EMPTY_WORDS = {
    "", "none", "n/a", "na", "nothing", "empty", "blank", "no changes", "no change",
    "no objects", "no updates", "none needed", "not needed", "left blank", "left empty",
}
_NAME_KEYS = ("name", "object", "label", "description", "phrase", "caption", "desc", "obj")
_BOX_KEYS = ("box", "bbox", "bounding_box", "boundingbox", "coordinates", "coords", "bounding box")
_LIST_KEYS = ("updated_objects", "objects", "layout", "boxes", "bounding_boxes", "updated objects")
_STRIP = " \t\r\n'\"`‘’“”[](){}<>,;:*_=#|•·-–—"
_BULLET_RE = re.compile(r"^(?:\d+[.)]|[-*•]|object\s*\d*\s*[:.)-])\s*", re.IGNORECASE)
_WORD_SCORES = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_SCORE_RE = re.compile(
    rf"(?i)\b(?:score|rating)\b[\s*_`]*(?:\(1\s*-\s*5\))?[\s*_`]*[:=\-]?[\s*_`\[(\"']*(?:of\s+)?"
    rf"(?P<value>{_NUM}|nan|inf|one|two|three|four|five)?"
)
_OUT_OF_RE = re.compile(rf"(?i)(?<![\w.])(?P<value>{_NUM})\s*(?:/\s*5|out\s+of\s+5)\b")


def parse_layout(text: str, image_size: tuple[int, int] | None = None) -> Layout:
    """Read a layout from an MLLM answer; ``image_size`` (w, h) lets pixel boxes be normalized.

    An explicitly empty objects section (``Updated objects:`` followed by nothing, ``[]`` or
    ``none``) is a valid empty layout: that is how align says the image already matches.
    """
    if not isinstance(text, str):
        raise LayoutParseError(f"expected the answer as text, got {type(text).__name__}")
    if not text.strip():
        raise LayoutParseError("the answer is empty; give the objects with their boxes", text)
    from_json = _layout_from_json(text, image_size)
    if from_json is not None:
        return from_json
    region, labelled = _objects_region(text)
    boxes = _boxes_in(region, strict=labelled)
    if not boxes:
        if labelled and _says_empty(region):
            return Layout()
        where = "in the objects section" if labelled else "in the answer"
        raise LayoutParseError(
            f"no boxes found {where}; write each object as: description [x1, y1, x2, y2]", text
        )
    return layout_from_pairs(boxes, image_size, text=text)


def parse_score(text: str) -> int:
    """Read the 1..5 score from an MLLM answer (``Score: 4``, ``**Score:** 4/5``, JSON, ...)."""
    if not isinstance(text, str):
        raise ScoreParseError(f"expected the answer as text, got {type(text).__name__}")
    if not text.strip():
        raise ScoreParseError("the answer is empty; end it with 'Score: N' (N from 1 to 5)", text)
    found = _score_from_json(text)
    if found is None:
        labelled = list(_SCORE_RE.finditer(text))
        numbered = [m.group("value") for m in labelled if m.group("value")]
        if numbered:
            found = numbered[-1]
        elif labelled:
            raise ScoreParseError("the score section has no number; give 'Score: N' (1..5)", text)
        else:
            outs = {m.group("value") for m in _OUT_OF_RE.finditer(text)}
            bare = text.strip().strip(_STRIP + ".!")
            if len(outs) == 1:
                found = outs.pop()
            elif _NUM_RE.match(bare) or bare.lower() in _WORD_SCORES:
                found = bare
            else:
                raise ScoreParseError("no score found; end the answer with 'Score: N' (N from 1 to 5)", text)
    return _score_value(found, text)


def extract_reasoning(text: str) -> str:
    """The reasoning part of an answer: after ``Reasoning:`` up to the next section, else the
    text before the objects/score section. Never raises."""
    if not isinstance(text, str):
        return ""
    m = re.search(r"(?is)reasoning[\s*_`]*:[\s*_`]*(.*?)(?=(?:updated\s+objects|updated\s+layout|score)[\s*_`]*:|\Z)", text)
    if m:
        return _tidy(m.group(1))
    cut = re.search(r"(?i)(updated\s+objects|objects|score)[\s*_`]*:", text)
    return _tidy(text[: cut.start()] if cut else "")


def layout_from_pairs(
    pairs: Sequence[tuple[str, Sequence[Any]]],
    image_size: tuple[int, int] | None = None,
    *,
    text: str | None = None,
) -> Layout:
    """Named number quadruples -> Layout: detects the scale (normalized, pixels, 0..100,
    0..1000) and the format (corners or x/y/w/h), repairs small overshoots, records every read."""
    names: list[str] = []
    quads: list[list[float]] = []
    for name, values in pairs:
        label = _clean_name(str(name))
        if not label:
            raise LayoutParseError(f"a box {list(values)} has no object description before it", text)
        vals = list(values)
        if len(vals) != 4:
            raise LayoutParseError(
                f"{label!r} has {len(vals)} numbers; a box needs exactly 4: [x1, y1, x2, y2]", text
            )
        try:
            nums = [float(v) for v in vals]
        except (TypeError, ValueError, OverflowError):
            raise LayoutParseError(f"{label!r} has a box with non-numbers: {vals}", text) from None
        if not all(math.isfinite(v) for v in nums):
            raise LayoutParseError(f"{label!r} has a box with a non-finite number: {vals}", text)
        names.append(label)
        quads.append(nums)
    notes: list[str] = []
    top = max((max(abs(v) for v in q) for q in quads), default=0.0)
    if top > 1.05:
        if image_size is not None and top <= max(image_size) * 1.05:
            w, h = image_size
            quads = [[q[0] / w, q[1] / h, q[2] / w, q[3] / h] for q in quads]
            notes.append(f"read the boxes as pixels of a {w}x{h} image")
        elif top <= 100:
            quads = [[v / 100 for v in q] for q in quads]
            notes.append("read the boxes as a 0..100 scale")
        elif top <= 1000:
            quads = [[v / 1000 for v in q] for q in quads]
            notes.append("read the boxes as a 0..1000 scale")
        else:
            raise LayoutParseError(
                f"coordinates up to {top:g} cannot be normalized; give boxes in [0, 1]", text
            )
    box_format = "xyxy"
    inverted = [i for i, q in enumerate(quads) if not (q[0] < q[2] and q[1] < q[3])]
    if inverted:
        if all(q[2] > 0 and q[3] > 0 and q[0] + q[2] <= 1.02 and q[1] + q[3] <= 1.02 for q in quads):
            box_format = "xywh"
            notes.append("read the boxes as [x, y, width, height] (corners were out of order)")
        else:
            i = inverted[0]
            raise LayoutParseError(
                f"{names[i]!r}: corners {quads[i]} are out of order; give [x1, y1, x2, y2] with "
                "x1 < x2 and y1 < y2",
                text,
            )
    try:
        return Layout.from_pairs(zip(names, quads, strict=True), box_format=box_format, repairs=notes)
    except ValueError as exc:
        raise LayoutParseError(str(exc), text) from None


# -- layout internals -------------------------------------------------------------------------


def _objects_region(text: str) -> tuple[str, bool]:
    """The part of ``text`` that holds the objects, and whether a header introduced it."""
    headers = list(_HEADER_RE.finditer(text))
    updated = [m for m in headers if m.group("kind").lower().startswith("updated")]
    plain = [m for m in headers if not m.group("kind").lower().startswith("current")]
    chosen = (updated or plain or [None])[-1]
    if chosen is None:
        return text, False
    rest = text[chosen.end():]
    stop = _STOP_RE.search(rest)
    return (rest[: stop.start()] if stop else rest), True


def _boxes_in(region: str, strict: bool) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    prev_end = 0
    for m in _GROUP_RE.finditer(region):
        parts = [p.strip().strip("'\"`‘’“” ") for p in m.group(1).split(",")]
        if len(parts) > 1 and parts[-1] == "":
            parts.pop()  # a trailing comma: [0.1, 0.2, 0.3, 0.4,]
        lowered = [p.lower() for p in parts]
        has_bad = any(p in ("nan", "inf", "-inf", "+inf", "infinity") for p in lowered)
        numeric = [p for p in parts if _NUM_RE.match(p)]
        if has_bad and len(parts) >= 3:
            name = _clean_name(_last_line(region[prev_end : m.start()]))
            raise LayoutParseError(f"{name or 'a box'!r} has a non-finite number: [{m.group(1)}]", region)
        if len(numeric) != len(parts) or not parts:
            continue  # words in brackets are part of a description, e.g. "a cup (blue)"
        if len(parts) == 4:
            out.append((_last_line(region[prev_end : m.start()]), parts))
            prev_end = m.end()
        elif len(parts) == 3 or len(parts) > 4 or (strict and len(parts) == 2):
            name = _clean_name(_last_line(region[prev_end : m.start()]))
            raise LayoutParseError(
                f"{name or 'a box'!r} has {len(parts)} numbers; a box needs exactly 4: "
                "[x1, y1, x2, y2]",
                region,
            )
    return out


def _last_line(segment: str) -> str:
    lines = [ln for ln in segment.splitlines() if ln.strip(_STRIP)]
    return lines[-1] if lines else ""


def _clean_name(name: str) -> str:
    name = _strip_edges(name)
    while True:
        stripped = _strip_edges(_BULLET_RE.sub("", name))
        if stripped == name:
            break
        name = stripped
    name = re.sub(r"\*\*|__|`", "", name)
    return " ".join(name.split())


def _strip_edges(name: str) -> str:
    """Strip quotes, brackets and punctuation from both ends, keeping a closing bracket that
    closes one opened inside the name: ``a cat (sleeping)`` stays whole."""
    name = name.lstrip(_STRIP)
    while name and name[-1] in _STRIP:
        closer = name[-1]
        opener = {")": "(", "]": "["}.get(closer)
        if opener and name.count(opener) >= name.count(closer):
            break
        name = name[:-1]
    return name


def _says_empty(region: str) -> bool:
    words = re.sub(r"[\[\]()'\"`*_.:#>\-]", " ", region).strip().lower()
    return " ".join(words.split()) in _EMPTY_WORDS


def _json_values(text: str) -> list[Any]:
    """Every JSON value that parses at a ``{`` or ``[`` in the text, largest first."""
    decoder = json.JSONDecoder()
    found: list[tuple[int, Any]] = []
    i = 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = decoder.raw_decode(text, i)
            except (json.JSONDecodeError, RecursionError):
                i += 1
                continue
            found.append((end - i, value))
            i = end
        else:
            i += 1
    return [v for _, v in sorted(found, key=lambda t: -t[0])]


def _layout_from_json(text: str, image_size: tuple[int, int] | None) -> Layout | None:
    for value in _json_values(text):
        pairs = _json_pairs(value)
        if pairs is None:
            continue
        if not pairs:
            return Layout()
        return layout_from_pairs(pairs, image_size, text=text)
    return None


def _json_pairs(value: Any) -> list[tuple[str, list[Any]]] | None:
    """Pairs from the JSON shapes MLLMs use, or None when ``value`` is not a layout."""
    if isinstance(value, dict):
        lowered = {str(k).lower(): v for k, v in value.items()}
        for key in _LIST_KEYS:
            if key in lowered and isinstance(lowered[key], (list, dict)):
                inner = _json_pairs(lowered[key])
                return [] if inner is None and not lowered[key] else inner
        if value and all(isinstance(v, list) and len(v) >= 2 and _all_numbers(v) for v in value.values()):
            return [(str(k), list(v)) for k, v in value.items()]
        if _as_object(value) is not None:
            return [_as_object(value)]  # type: ignore[list-item]
        return None
    if isinstance(value, list):
        if not value:
            return None
        pairs = []
        for item in value:
            if isinstance(item, dict) and _as_object(item) is not None:
                pairs.append(_as_object(item))
            elif (
                isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], list)
            ):
                pairs.append((item[0], list(item[1])))
            else:
                return None
        return pairs  # type: ignore[return-value]
    return None


def _as_object(item: dict[str, Any]) -> tuple[str, list[Any]] | None:
    lowered = {str(k).lower(): v for k, v in item.items()}
    name = next((lowered[k] for k in _NAME_KEYS if isinstance(lowered.get(k), str)), None)
    box = next((lowered[k] for k in _BOX_KEYS if isinstance(lowered.get(k), list)), None)
    if name is None or box is None:
        return None
    return name, list(box)


def _all_numbers(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


# -- score internals --------------------------------------------------------------------------


def _score_from_json(text: str) -> str | None:
    for value in _json_values(text):
        if isinstance(value, dict):
            lowered = {str(k).lower(): v for k, v in value.items()}
            for key in ("score", "rating"):
                if key in lowered:
                    return str(lowered[key])
    return None


def _score_value(found: str, text: str) -> int:
    raw = found.strip().lower()
    if raw in _WORD_SCORES:
        return _WORD_SCORES[raw]
    try:
        value = float(raw)
    except ValueError:
        raise ScoreParseError(f"the score {found!r} is not a number; give an integer from 1 to 5", text) from None
    if not math.isfinite(value) or value != int(value):
        raise ScoreParseError(f"the score {found!r} is not a whole number from 1 to 5", text)
    if not 1 <= value <= 5:
        raise ScoreParseError(f"the score {int(value)} is outside 1..5; use the 1 to 5 rubric", text)
    return int(value)


def _tidy(text: str) -> str:
    return " ".join(text.replace("**", "").split()).strip(" -*")
