"""Reading layouts and scores out of what real MLLMs write.

Answers come wrapped in prose and markdown, as Python-ish lists with stray quotes
(``'a bottle [0.46, 0.742, 0.723, 0.821']]``), as bullets, as JSON, with ``.5`` decimals, in
pixels or on a 0..1000 scale, and sometimes as ``[x, y, width, height]``. The parsers accept all
of that and turn it into the project's one convention, recording every reinterpretation in
``Layout.repairs``. Anything they cannot read without guessing raises ``LayoutParseError`` or
``ScoreParseError`` with a message meant to be shown back to the MLLM, never another exception.

Answers are hostile input as far as this module is concerned: every answer ends as a value or
the typed error in time linear in its length (no regex backtracks over a run of characters, no
JSON decode is retried at every bracket), and messages quote at most a short piece of it.
Reasoning blocks of reasoning models (``<think>...</think>``) are removed before anything is read.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from mllm_guidance.errors import LayoutParseError, ParseError, ScoreParseError
from mllm_guidance.layout import MAX_NAME_CHARS, MAX_OBJECTS, Layout, too_many_objects

#: Longest answer read, in characters, once reasoning blocks are removed. A real answer is a
#: few hundred characters (the thesis's) to about 10 KB (64 objects, the cap, with long
#: descriptions, as indented JSON); 64 Ki characters is several times that and still parses in
#: milliseconds. A longer answer is a runaway generation: it gets a typed error asking for less.
MAX_ANSWER_CHARS = 65_536
#: Longest reply looked at at all, reasoning included: a reasoning model's chain of thought
#: stays under about 40k tokens (~160 KB of text); anything past 1 Mi characters is refused
#: before it is scanned.
MAX_REPLY_CHARS = 1_048_576
#: Deepest JSON nesting decoded: a layout is at most 4 deep ({"objects": [{"box": [...]}]});
#: deeper spans are skipped (their inner parts are still tried), which bounds the decoder's
#: work and keeps it far from the recursion limit.
MAX_JSON_DEPTH = 32
#: Shortest box side read (normalized): one pixel of a 512 x 512 image. A smaller box is a
#: degenerate answer no generator can ground, and is sent back.
MIN_BOX_SIDE = 1 / 512

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_NUM_RE = re.compile(rf"^{_NUM}$")
_GROUP_RE = re.compile(r"[\[(]([^\[\]()]*)[\])]")
# possessive runs (*+) and a leading class without newlines keep every pattern linear: a run
# of spaces or blank lines is scanned once, never re-split by backtracking
_HEADER_RE = re.compile(
    r"(?i)(?P<kind>updated\s++objects|updated\s++layout|current\s++(?:output\s++)?objects|objects|layout)"
    r"[\s*_`]*+(?:section[\s*_`]*+)?:"
)
_STOP_RE = re.compile(
    r"(?im)^(?:[^\S\n]|[#>*_`-])*+(?:reasoning|score|user\s+prompt|explanation|justification|note|notes)"
    r"[\s*_`]*+:"
)
_EMPTY_WORDS = {
    "", "none", "n/a", "na", "nothing", "empty", "blank", "no changes", "no change",
    "no objects", "no updates", "none needed", "not needed", "left blank", "left empty",
}
_NAME_KEYS = ("name", "object", "label", "description", "phrase", "caption", "desc", "obj")
_BOX_KEYS = ("box", "bbox", "bounding_box", "boundingbox", "coordinates", "coords", "bounding box")
_LIST_KEYS = ("updated_objects", "objects", "layout", "boxes", "bounding_boxes", "updated objects")
_STRIP = " \t\r\n'\"`‘’“”[](){}<>,;:*_=#|•·-–—"
_OPENER = {")": "(", "]": "["}
_STRIP_RUN = re.compile("[" + re.escape(_STRIP) + "]*+")
# a bullet a description may start with (``1.``, ``-``, ``Object 2:``); used with match(pos)
_BULLET_RE = re.compile(r"(?:\d++[.)]|[-*•]|object\s*+\d*+\s*+[:.)-])\s*+", re.IGNORECASE)
_WORD_SCORES = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_SCORE_RE = re.compile(
    rf"(?i)\b(?:score|rating)\b[\s*_`]*+(?:\(1\s*-\s*5\))?[\s*_`]*+[:=\-]?[\s*_`\[(\"']*+(?:of\s++)?"
    rf"(?P<value>{_NUM}|nan|inf|one|two|three|four|five)?"
    rf"(?:[\s*_`]*+(?:(?P<percent>%)|(?:/|out\s++of\b)\s*+(?P<scale>{_NUM})))?"
)
_OUT_OF_RE = re.compile(rf"(?i)(?<![\w.])(?P<value>{_NUM})\s*+(?:/\s*+5|out\s++of\s++5)\b")
_FRACTION_RE = re.compile(
    rf"(?i)^(?P<value>{_NUM}|nan|inf|one|two|three|four|five)\s*+(?:/|out\s++of\b)\s*+(?P<scale>{_NUM})$"
)
_THINK_TAG = re.compile(r"(?i)<\s*+(?P<close>/?)\s*+think(?:ing)?\s*+>")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_JSON_MARK = re.compile(r'[\[\]{}"]')


def parse_layout(text: str, image_size: tuple[int, int] | None = None) -> Layout:
    """Read a layout from an MLLM answer; ``image_size`` (w, h) lets pixel boxes be normalized.

    An explicitly empty objects section (``Updated objects:`` followed by nothing, ``[]`` or
    ``none``) is a valid empty layout: that is how align says the image already matches.
    """
    text = _answer(text, LayoutParseError, "give the objects with their boxes")
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
    """Read the 1..5 score from an MLLM answer (``Score: 4``, ``**Score:** 4/5``, JSON, ...).

    A score on another scale (``Score: 4/10``, ``80%``) is refused, never read as 1..5."""
    text = _answer(text, ScoreParseError, "end it with 'Score: N' (N from 1 to 5)")
    found = _score_from_json(text)
    if found is None:
        labelled = list(_SCORE_RE.finditer(text))
        numbered = [m for m in labelled if m.group("value")]
        if numbered:
            last = numbered[-1]
            found = last.group("value")
            if last.group("percent"):
                raise ScoreParseError(_other_scale(f"{found}%"), text)
            if last.group("scale") is not None:
                found = f"{found}/{last.group('scale')}"
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
    text before the objects/score section. Reasoning-model blocks (``<think>``) are not part of
    it. Never raises."""
    if not isinstance(text, str):
        return ""
    text = _SURROGATE.sub("\ufffd", strip_reasoning(text[:MAX_REPLY_CHARS])[:MAX_ANSWER_CHARS])
    m = re.search(
        r"(?is)reasoning[\s*_`]*+:[\s*_`]*+(.*?)"
        r"(?=(?:updated\s++objects|updated\s++layout|score|better)[\s*_`]*+:|\Z)",
        text,
    )
    if m:
        return _tidy(m.group(1))
    cut = re.search(r"(?i)(updated\s++objects|objects|score|better)[\s*_`]*+:", text)
    return _tidy(text[: cut.start()] if cut else "")


def strip_reasoning(text: str) -> str:
    """``text`` without the reasoning blocks of reasoning models (DeepSeek-R1, Qwen3, QwQ).

    ``<think>...</think>`` blocks go; a ``</think>`` with no opening tag (the chat template
    opened the block in the prompt) ends a block that started with the reply; an opening tag
    never closed (the model ran out of tokens) takes the rest of the reply with it. One pass.
    """
    if "<" not in text:
        return text
    kept: list[str] = []
    pos, inside = 0, False
    for m in _THINK_TAG.finditer(text):
        closing = bool(m.group("close"))
        if not inside and not closing:
            kept.append(text[pos : m.start()])
            inside = True
        elif closing:
            if not inside:
                kept = []  # everything so far was reasoning whose opening tag we never saw
            pos, inside = m.end(), False
    if not inside:
        kept.append(text[pos:])
    return "".join(kept)


def clean_reply(text: str) -> str:
    """A reply as it may be sent back to the MLLM with a retry request: reasoning blocks
    removed (reasoning models are not meant to see their own chain of thought again), lone
    surrogates replaced (HTTP clients encode requests as strict UTF-8 and would fail), and
    cut to ``MAX_ANSWER_CHARS``."""
    text = strip_reasoning(text[:MAX_REPLY_CHARS])
    if len(text) > MAX_ANSWER_CHARS:
        text = text[:MAX_ANSWER_CHARS] + " [... cut]"
    return _SURROGATE.sub("\ufffd", text)


def layout_from_pairs(
    pairs: Sequence[tuple[str, Sequence[Any]]],
    image_size: tuple[int, int] | None = None,
    *,
    text: str | None = None,
) -> Layout:
    """Named number quadruples -> Layout: detects the scale (normalized, pixels, 0..100,
    0..1000) and the format (corners or x/y/w/h), repairs small overshoots, records every read."""
    if len(pairs) > MAX_OBJECTS:
        raise LayoutParseError(too_many_objects(len(pairs)), text)
    names: list[str] = []
    quads: list[list[float]] = []
    for name, values in pairs:
        label = _clean_name(str(name))
        vals = list(values)
        if not _visible(label):  # nothing, or only zero-width / control characters
            raise LayoutParseError(f"a box {_q(vals)} has no object description before it", text)
        if len(label) > MAX_NAME_CHARS:
            raise LayoutParseError(
                f"the description {_q(label)} is {len(label):,} characters long; keep each "
                f"under {MAX_NAME_CHARS:,}",
                text,
            )
        if len(vals) != 4:
            raise LayoutParseError(
                f"{_q(label)} has {len(vals)} numbers; a box needs exactly 4: [x1, y1, x2, y2]", text
            )
        try:
            nums = [float(v) for v in vals]
        except (TypeError, ValueError, OverflowError):
            raise LayoutParseError(f"{_q(label)} has a box with non-numbers: {_q(vals)}", text) from None
        if not all(math.isfinite(v) for v in nums):
            raise LayoutParseError(f"{_q(label)} has a box with a non-finite number: {_q(vals)}", text)
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
    # a box inverted on both axes reads as swapped corners as well as x/y/w/h ([0.9, 0.9, 0.1, 0.1]
    # is a corner sliver, or most of the image): x/y/w/h only when some box is out of order on one
    # axis alone, which swapped corners do not explain; otherwise the model is asked again
    one_axis = [i for i in inverted if (quads[i][0] < quads[i][2]) != (quads[i][1] < quads[i][3])]
    if inverted:
        if one_axis and all(q[2] > 0 and q[3] > 0 and q[0] + q[2] <= 1.02 and q[1] + q[3] <= 1.02 for q in quads):
            box_format = "xywh"
            notes.append("read the boxes as [x, y, width, height] (corners were out of order)")
        else:
            i = inverted[0]
            raise LayoutParseError(
                f"{_q(names[i])}: corners {quads[i]} are out of order; give [x1, y1, x2, y2] with "
                "x1 < x2 and y1 < y2",
                text,
            )
    try:
        layout = Layout.from_pairs(zip(names, quads, strict=True), box_format=box_format, repairs=notes)
    except ValueError as exc:
        raise LayoutParseError(str(exc), text) from None
    for obj in layout.objects:  # 2. a box no generator can draw (5e-324 wide)
        if obj.box.x2 - obj.box.x1 < MIN_BOX_SIDE or obj.box.y2 - obj.box.y1 < MIN_BOX_SIDE:
            raise LayoutParseError(
                f"{_q(obj.name)}: the box {_q(obj.box.as_list())} has (almost) no area; give each box at least "
                f"{MIN_BOX_SIDE:.3f} of the image a side",
                text,
            )
    return layout


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
            raise LayoutParseError(f"{_q(name or 'a box')} has a non-finite number: {_q(f'[{m.group(1)}]')}", region)
        if len(numeric) != len(parts) or not parts:
            continue  # words in brackets are part of a description, e.g. "a cup (blue)"
        if len(parts) == 4:
            out.append((_last_line(region[prev_end : m.start()]), parts))
            prev_end = m.end()
        elif len(parts) == 3 or len(parts) > 4 or (strict and len(parts) == 2):
            name = _clean_name(_last_line(region[prev_end : m.start()]))
            raise LayoutParseError(
                f"{_q(name or 'a box')} has {len(parts)} numbers; a box needs exactly 4: "
                "[x1, y1, x2, y2]",
                region,
            )
    return out


def _last_line(segment: str) -> str:
    lines = [ln for ln in segment.splitlines() if ln.strip(_STRIP)]
    return lines[-1] if lines else ""


def _clean_name(name: str) -> str:
    """The description before a box: quotes, brackets and punctuation stripped from both ends
    (a closing bracket that closes one opened inside the name stays: ``a cat (sleeping)``),
    then bullets (``1.``, ``-``, ``Object 2:``) and again the ends, until nothing changes;
    markdown emphasis dropped, spacing collapsed.

    Works on indices into ``name`` with bracket counts kept up to date, so each character is
    looked at a bounded number of times however many bullets or brackets a line holds.
    """
    counts = {c: name.count(c) for c in "()[]"}
    start, end = 0, len(name)

    def drop(i: int, j: int) -> None:
        for c in "()[]":
            counts[c] -= name.count(c, i, j)

    def strip_edges() -> None:
        nonlocal start, end
        left = _STRIP_RUN.match(name, start, end).end()  # type: ignore[union-attr]
        drop(start, left)
        start = left
        while end > start and (last := name[end - 1]) in _STRIP:
            opener = _OPENER.get(last)
            if opener and counts[opener] >= counts[last]:
                break
            if last in counts:
                counts[last] -= 1
            end -= 1

    strip_edges()
    while (bullet := _BULLET_RE.match(name, start, end)) is not None:
        drop(start, bullet.end())
        start = bullet.end()
        strip_edges()
    name = re.sub(r"\*\*|__|`", "", name[start:end])
    return " ".join(name.split())


def _says_empty(region: str) -> bool:
    words = re.sub(r"[\[\]()'\"`*_.:#>\-]", " ", region).strip().lower()
    return " ".join(words.split()) in _EMPTY_WORDS


def _json_values(text: str) -> list[Any]:
    """Every JSON value that parses at a ``{`` or ``[`` in the text, largest first.

    Left to right, the first value found at a position wins and the scan goes on after it. Only
    the openers of balanced spans (``_json_spans``) at most ``MAX_JSON_DEPTH`` deep are tried,
    so the decoder never runs to the end of the text from every bracket of ``[[[[...``; a failed
    try costs at most its span, and a character lies inside at most that many tried spans.
    """
    found: list[tuple[int, Any]] = []
    resume = 0
    for start in _json_spans(text):
        if start < resume:
            continue  # inside a value already read
        try:
            value, end = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            continue
        found.append((end - start, value))
        resume = end
    return [v for _, v in sorted(found, key=lambda t: -t[0])]


def _json_spans(text: str) -> list[int]:
    """Positions of ``{``/``[`` whose brackets close in order (strings skipped, JSON-style)
    within ``MAX_JSON_DEPTH`` levels: the only places a JSON array or object can start.

    A superset of where ``raw_decode`` succeeds: it ignores commas, colons and the words
    between brackets. One pass from the right over the bracket and quote characters; each
    opener walks its own level, jumping over inner spans (already known) and strings.
    """
    marks = [(m.start(), text[m.start()]) for m in _JSON_MARK.finditer(text)]
    count = len(marks)
    # for each mark: the index of the first unescaped quote after it (where a string opened
    # there would end); a quote is escaped by an odd run of backslashes before it
    next_quote = [-1] * (count + 1)
    for k in range(count - 1, -1, -1):
        next_quote[k] = next_quote[k + 1]
        if k + 1 < count and marks[k + 1][1] == '"' and not _escaped(text, marks[k + 1][0]):
            next_quote[k] = k + 1
    close_of = [-1] * count  # opener mark -> its closer mark
    depth = [0] * count
    starts: list[int] = []
    for k in range(count - 1, -1, -1):
        char = marks[k][1]
        if char not in "[{":
            continue
        want = "]" if char == "[" else "}"
        t, levels = k + 1, 1
        while t < count:
            c = marks[t][1]
            if c == '"':
                if next_quote[t] < 0:
                    break
                t = next_quote[t] + 1
            elif c in "[{":
                if close_of[t] < 0:
                    break
                levels = max(levels, depth[t] + 1)
                t = close_of[t] + 1
            else:
                if c == want:
                    close_of[k], depth[k] = t, levels
                break
        if close_of[k] >= 0 and depth[k] <= MAX_JSON_DEPTH:
            starts.append(marks[k][0])
    starts.reverse()
    return starts


def _escaped(text: str, pos: int) -> bool:
    run = 0
    while pos - run - 1 >= 0 and text[pos - run - 1] == "\\":
        run += 1
    return run % 2 == 1


def _parse_int(digits: str) -> int | float:
    """JSON integers; one too long for ``int`` (over 4,300 digits) reads as an infinite float,
    which the box and score checks then refuse, instead of a ``ValueError`` from the decoder."""
    try:
        return int(digits)
    except ValueError:
        return float(digits)


_DECODER = json.JSONDecoder(parse_int=_parse_int)


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
    if box is not None and name is None:
        given = next((lowered[k] for k in _NAME_KEYS if k in lowered), None)
        if given is not None:  # a JSON object with a box and a name that is not text: ask again
            raise LayoutParseError(f"an object's name is {_q(given)}, not text; give each object a \"name\" string")
    if name is None or box is None:
        return None
    return name, list(box)


def _visible(name: str) -> bool:
    """Whether a name shows anything: a letter, a digit or a symbol (not only zero-width,
    control or combining characters)."""
    return any(unicodedata.category(c)[0] in "LNS" for c in name)


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
    fraction = _FRACTION_RE.match(raw)
    if fraction:
        if float(fraction.group("scale")) != 5:
            raise ScoreParseError(_other_scale(found), text)
        raw = fraction.group("value")
    if raw in _WORD_SCORES:
        return _WORD_SCORES[raw]
    try:
        value = float(raw)
    except ValueError:
        raise ScoreParseError(f"the score {_q(found)} is not a number; give an integer from 1 to 5", text) from None
    if not math.isfinite(value) or value != int(value):
        raise ScoreParseError(f"the score {_q(found)} is not a whole number from 1 to 5", text)
    if not 1 <= value <= 5:
        raise ScoreParseError(f"the score {_q(found)} is outside 1..5; use the 1 to 5 rubric", text)
    return int(value)


def _other_scale(found: str) -> str:
    return (
        f"the score {_q(found)} is on another scale; score on the 1 to 5 rubric and write "
        "'Score: N' with N from 1 to 5"
    )


# -- every answer -----------------------------------------------------------------------------


def _answer(text: Any, error: type[ParseError], ask: str) -> str:
    """The part of a reply to read: reasoning blocks removed, lone surrogates replaced, and
    the length checked, so that the readers after it work on bounded, encodable text."""
    if not isinstance(text, str):
        raise error(f"expected the answer as text, got {type(text).__name__}")
    if len(text) > MAX_REPLY_CHARS:
        raise error(
            f"the answer is {len(text):,} characters long; keep it under {MAX_ANSWER_CHARS:,}: {ask}",
            text[:200],
        )
    answer = strip_reasoning(text)
    if not answer.strip():
        if text.strip():
            raise error(f"the answer holds only a reasoning block (<think>); after it, {ask}", text)
        raise error(f"the answer is empty; {ask}", text)
    if len(answer) > MAX_ANSWER_CHARS:
        raise error(
            f"the answer is {len(answer):,} characters long; keep it under {MAX_ANSWER_CHARS:,}: {ask}",
            text[:200],
        )
    if _SURROGATE.search(answer):
        answer = _SURROGATE.sub("\ufffd", answer)
    return answer


def _q(value: Any, limit: int = 80) -> str:
    """A short quoted piece of the answer for a message: at most ``limit`` characters."""
    shown = value if isinstance(value, str) else str(value)
    return repr(shown if len(shown) <= limit else shown[: limit - 3] + "...")


def _tidy(text: str) -> str:
    return " ".join(text.replace("**", "").split()).strip(" -*")


_BETTER_RE = re.compile(r"(?i)\bbetter(?:\s+image)?\b[\s*_`]*+[:=\-][\s*_`\[(\"']*+(?:image\s+)?(?P<value>[A-Za-z0-9]+)")


def parse_better(text: str) -> str:
    """Read the pairwise judge's choice, ``A`` or ``B``, from ``Better: A`` (the last such line wins)."""
    from mllm_guidance.errors import CompareParseError

    text = _answer(text, CompareParseError, "end it with 'Better: A' or 'Better: B'")
    found = [m.group("value").upper() for m in _BETTER_RE.finditer(text)]
    if not found:
        raise CompareParseError("no choice found; end the answer with 'Better: A' or 'Better: B'", text)
    if found[-1] not in ("A", "B"):
        raise CompareParseError(f"the choice {found[-1]!r} is neither A nor B; answer 'Better: A' or 'Better: B'", text)
    return found[-1]
