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
