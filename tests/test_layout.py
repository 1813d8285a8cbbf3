import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mllm_guidance.layout import Box, Layout, LayoutObject

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@st.composite
def boxes(draw):
    x1 = draw(st.floats(0.0, 0.9))
    y1 = draw(st.floats(0.0, 0.9))
    x2 = draw(st.floats(x1 + 0.01, 1.0))
    y2 = draw(st.floats(y1 + 0.01, 1.0))
    return Box.of([x1, y1, x2, y2])


def lay(*items):
    return Layout.from_pairs(items)


class TestBoxValidation:
    @pytest.mark.parametrize("values", [[0.5, 0.1, 0.4, 0.9], [0.1, 0.5, 0.9, 0.5], [0.1, 0.1, 1.2, 0.5],
                                        [-0.1, 0.1, 0.5, 0.5], [math.nan, 0.1, 0.5, 0.5], [0.1, 0.1, math.inf, 0.5]])
    def test_strict_box_rejects(self, values):
        with pytest.raises(ValidationError):
            Box.of(values)

    def test_repair_clamps_and_says_so(self):
        box, notes = Box.repair([-0.02, 0.1, 1.002, 0.5], label="'dog'")
        assert box.as_list() == [0.0, 0.1, 1.0, 0.5]
        assert len(notes) == 1 and "'dog'" in notes[0] and "clamped" in notes[0]

    def test_repair_is_silent_when_nothing_changes(self):
        assert Box.repair([0.1, 0.1, 0.5, 0.5])[1] == []

    @pytest.mark.parametrize("values", [[0.5, 0.1, 0.4, 0.9], [math.nan, 0, 1, 1], [1.1, 0.1, 1.3, 0.5]])
    def test_repair_refuses_guesses(self, values):
        with pytest.raises(ValueError):
            Box.repair(values)

    def test_wrong_count(self):
        with pytest.raises(ValueError, match="exactly 4"):
            Box.of([0.1, 0.2, 0.3])


class TestConversions:
    @given(boxes())
    def test_xywh_round_trip(self, box):
        back = Box.from_xywh(box.to_xywh())
        assert back.distance(box) < 1e-9

    @given(boxes(), st.integers(64, 2048), st.integers(64, 2048))
    def test_pixels_round_trip_within_a_pixel(self, box, w, h):
        px = box.to_pixels(w, h)
        assert 0 <= px[0] < px[2] <= w and 0 <= px[1] < px[3] <= h
        back = Box.from_pixels(px, w, h)
        assert abs(back.x1 - box.x1) <= 1 / w + 1e-9 and abs(back.y2 - box.y2) <= 1 / h + 1e-9

    def test_pixel_values(self):
        assert Box.of([0.25, 0.5, 0.75, 1.0]).to_pixels(512, 256) == [128, 128, 384, 256]
        assert Box.from_pixels([128, 128, 384, 256], 512, 256).as_list() == [0.25, 0.5, 0.75, 1.0]


class TestGeometry:
    def test_area_iou_cover(self):
        a, b = Box.of([0, 0, 0.5, 0.5]), Box.of([0.25, 0.25, 0.75, 0.75])
        assert a.area == pytest.approx(0.25)
        assert a.intersection(b) == pytest.approx(0.0625)
        assert a.iou(b) == pytest.approx(0.0625 / (0.5 - 0.0625))
        assert a.covered_by(b) == pytest.approx(0.25)
        assert Box.of([0.1, 0.1, 0.2, 0.2]).covered_by(a) == pytest.approx(1.0)

    @given(boxes(), boxes())
    def test_properties(self, a, b):
        assert 0 <= a.iou(b) <= 1 + 1e-9
        assert a.iou(b) == pytest.approx(b.iou(a))
        assert 0 <= a.covered_by(b) <= 1 + 1e-9
        assert a.iou(a) == pytest.approx(1.0)
        assert a.intersection(b) <= min(a.area, b.area) + 1e-12

    def test_rule_warnings(self):
        layout = lay(("a table", [0.0, 0.5, 1.0, 1.0]), ("a cup", [0.4, 0.6, 0.45, 0.65]), ("a cat", [0.0, 0.0, 0.4, 0.4]))
        warnings = layout.rule_warnings()
        assert any("'a cup' is smaller than 0.1" in w for w in warnings)
        assert any("of 'a cup' lies inside 'a table'" in w for w in warnings)
        assert not any("'a cat'" in w for w in warnings)
        # reported, never changed
        assert layout.objects[1].box.as_list() == [0.4, 0.6, 0.45, 0.65]

    def test_largest_keeps_order(self):
        layout = lay(("s", [0, 0, 0.1, 0.1]), ("l", [0, 0, 0.9, 0.9]), ("m", [0, 0, 0.5, 0.5]))
        assert layout.largest(2).names == ["l", "m"]


class TestEqualityAndDiff:
    def test_same_within_tolerance_any_order_and_article(self):
        a = lay(("a cat", [0.1, 0.1, 0.5, 0.5]), ("a dog", [0.5, 0.5, 0.9, 0.9]))
        b = lay(("Dog", [0.505, 0.5, 0.9, 0.9]), ("the  cat", [0.1, 0.1, 0.5, 0.5]))
        assert a.same_as(b)
        assert not a.same_as(b, tolerance=0.001)

    def test_duplicates_need_a_full_matching(self):
        # a greedy pass would pair the first apple with the wrong box
        a = lay(("apple", [0.1, 0.1, 0.3, 0.3]), ("apple", [0.105, 0.1, 0.305, 0.3]))
        b = lay(("apple", [0.112, 0.1, 0.312, 0.3]), ("apple", [0.1, 0.1, 0.3, 0.3]))
        assert a.same_as(b, tolerance=0.01)

    def test_different_counts_or_names(self):
        a = lay(("a cat", [0.1, 0.1, 0.5, 0.5]))
        assert not a.same_as(Layout())
        assert not a.same_as(lay(("a pink cat", [0.1, 0.1, 0.5, 0.5])))

    def test_diff(self):
        old = lay(("car", [0.0, 0.3, 0.3, 0.6]), ("truck", [0.4, 0.3, 0.7, 0.6]), ("balloon", [0.1, 0, 0.3, 0.2]), ("dolphin", [0.6, 0.6, 0.9, 0.9]))
        new = lay(("car", [0.4, 0.3, 0.7, 0.6]), ("truck", [0.0, 0.3, 0.3, 0.6]), ("bird", [0.5, 0.0, 0.7, 0.2]), ("pink dolphin", [0.6, 0.6, 0.9, 0.9]))
        d = old.diff(new)
        assert [o.name for o in d.added] == ["bird"]
        assert [o.name for o in d.removed] == ["balloon"]
        assert sorted(b.name for _, b in d.moved) == ["car", "truck"]
        assert [(a.name, b.name) for a, b in d.renamed] == [("dolphin", "pink dolphin")]
        assert "added (bird)" in d.summary() and "redescribed (dolphin -> pink dolphin)" in d.summary()
        assert old.diff(old).is_empty and old.diff(old).summary() == "unchanged"

    @given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), boxes()), max_size=6))
    def test_layout_equals_itself_and_diff_is_empty(self, items):
        layout = Layout(objects=[LayoutObject(name=n, box=b) for n, b in items])
        assert layout.same_as(layout) and layout.diff(layout).is_empty

    def test_to_lines(self):
        assert lay(("a cat", [0.1, 0.25, 0.5, 1.0])).to_lines() == "- a cat [0.1, 0.25, 0.5, 1]"


# -- hostile layouts (issue 10, items 4 and 9) ------------------------------------------------

import inspect  # noqa: E402
import itertools  # noqa: E402
import sys  # noqa: E402

from mllm_guidance.layout import MAX_OBJECTS, MAX_WARNINGS, _match  # noqa: E402

CAT = [0.1, 0.1, 0.5, 0.5]


def test_a_layout_holds_at_most_max_objects():
    assert len(lay(*[("a cat", CAT)] * MAX_OBJECTS)) == MAX_OBJECTS
    with pytest.raises(ValueError, match=f"at most {MAX_OBJECTS}"):
        lay(*[("a cat", CAT)] * (MAX_OBJECTS + 1))
    with pytest.raises(ValidationError):
        Layout(objects=[LayoutObject(name="a cat", box=Box.of(CAT))] * (MAX_OBJECTS + 1))


def test_matching_a_full_layout_of_identical_objects_needs_no_recursion():
    """Identical objects made the recursive matching nest once per object (1,000 objects hit
    the recursion limit after 13-57 s). The matching keeps its own stack now: it works with
    only a few frames of room left."""
    a = lay(*[("a cat", CAT)] * MAX_OBJECTS)
    b = lay(*[("the cat", [0.105, 0.1, 0.5, 0.5])] * MAX_OBJECTS)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 25)
    try:
        same, diff = a.same_as(b), a.diff(b)
    finally:
        sys.setrecursionlimit(limit)
    assert same and diff.is_empty


@given(st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=1, max_size=5))
def test_matching_is_maximum(table):
    """The iterative search finds as many pairs as the best assignment found by brute force."""
    left, right = list(range(len(table))), list(range(5))
    pairs = _match(left, right, lambda i, j: table[i][j])
    assert len(set(pairs.values())) == len(pairs) and all(table[i][j] for i, j in pairs.items())
    best = max(
        sum(1 for i, j in zip(left, perm, strict=False) if j is not None and table[i][j])
        for perm in itertools.permutations(right + [None] * len(left), len(left))
    )
    assert len(pairs) == best


def test_rule_warnings_are_bounded():
    """200 stacked boxes made 40,000 warnings per round (a 36 MB run directory)."""
    stacked = lay(*[("a very long description of a small cat " * 20, [0.1, 0.1, 0.15, 0.15])] * MAX_OBJECTS)
    warnings = stacked.rule_warnings()
    assert len(warnings) == MAX_WARNINGS + 1
    assert warnings[-1] == f"... and {MAX_OBJECTS + MAX_OBJECTS * (MAX_OBJECTS - 1) - MAX_WARNINGS} more breaches of the layout rules"
    assert sum(map(len, warnings)) < 200 * (MAX_WARNINGS + 1)


def test_diff_summaries_stay_short():
    old = lay(*[(f"object number {i} " * 30, [0.0, 0.0, 0.1, 0.1]) for i in range(MAX_OBJECTS)])
    assert "+56 more" in Layout().diff(old).summary() and len(Layout().diff(old).summary()) < 1000


@pytest.mark.parametrize("raw,clean", [
    ("\x1b[31mred\x1b[0m car", "red car"),
    ("a cat\x1b]0;new title\x07", "a cat"),
    ("a \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ cat", "a link cat"),
    ("a\x00b\x7f\x80c\x9b2Jd", "abcd"),
    ("a\tcat\nsleeping\x85", "a cat sleeping"),
    ("\u202eevil\u202c cat\u2066", "evil cat"),
    ("a \ud800 cat", "a \ufffd cat"),
    ("漢字 and العربية", "漢字 and العربية"),
])
def test_names_are_safe_to_print(raw, clean):
    assert LayoutObject(name=raw, box=Box.of(CAT)).name == clean


def test_a_name_of_only_control_characters_is_refused():
    with pytest.raises(ValidationError, match="empty"):
        LayoutObject(name="\x1b[2J\x00\u202e", box=Box.of(CAT))
