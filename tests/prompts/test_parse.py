import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mllm_guidance.errors import GuidanceError, LayoutParseError, ScoreParseError
from mllm_guidance.layout import Box, Layout, LayoutObject
from mllm_guidance.prompts import extract_reasoning, parse_layout, parse_score


def names_boxes(layout):
    return [(o.name, [round(v, 3) for v in o.box.as_list()]) for o in layout]


REAL_ANSWERS = [
    # the thesis's inline list format with stray quotes and brackets
    ("Reasoning: overlap them.\nUpdated Objects: ['a person [0.059, 0.137, 0.475, 0.898]', "
     "'a baby kangaroo [0.41, 0.684, 0.625, 0.898]', 'a bottle [0.46, 0.742, 0.723, 0.821']]",
     [("a person", [0.059, 0.137, 0.475, 0.898]), ("a baby kangaroo", [0.41, 0.684, 0.625, 0.898]),
      ("a bottle", [0.46, 0.742, 0.723, 0.821])]),
    ("Objects: ['a green car[0.041, 0.549, 0.453, 0.859]', 'a blue truck[0.525, 0.553, 0.934, 0.865]']",
     [("a green car", [0.041, 0.549, 0.453, 0.859]), ("a blue truck", [0.525, 0.553, 0.934, 0.865])]),
    # apostrophes inside names, inside single-quoted items
    ("Updated Objects: ['a child [0.059, 0.234, 0.391, 0.625]', 'a toy doctor's kit [0.41, 0.645, 0.615, 0.879']']",
     [("a child", [0.059, 0.234, 0.391, 0.625]), ("a toy doctor's kit", [0.41, 0.645, 0.615, 0.879])]),
    # markdown, bullets, numbering, bold, .5 decimals, a comma in a name, prose around
    ("Sure! Here is the layout.\n\n**Objects:**\n1. **a red, shiny apple**: [.1, .2, .5, .6]\n"
     "2. a dog - [0.5, 0.5, 0.9, 0.9]\n\nLet me know if you need changes.",
     [("a red, shiny apple", [0.1, 0.2, 0.5, 0.6]), ("a dog", [0.5, 0.5, 0.9, 0.9])]),
    ("### Updated objects\n* a cat (sleeping) [0.1, 0.1, 0.5, 0.5]\n* a sofa [0.0, 0.4, 1.0, 1.0]\n",
     [("a cat (sleeping)", [0.1, 0.1, 0.5, 0.5]), ("a sofa", [0.0, 0.4, 1.0, 1.0])]),
    # JSON in a fence, several shapes
    ('```json\n{"reasoning": "ok", "objects": [{"name": "a cat", "box": [0.1, 0.1, 0.5, 0.5]}]}\n```',
     [("a cat", [0.1, 0.1, 0.5, 0.5])]),
    ('[{"object": "a cat", "bbox": [0.1, 0.1, 0.5, 0.5]}, {"label": "a dog", "bounding_box": ["0.5", "0.5", "0.9", "0.9"]}]',
     [("a cat", [0.1, 0.1, 0.5, 0.5]), ("a dog", [0.5, 0.5, 0.9, 0.9])]),
    ('{"a cat": [0.1, 0.1, 0.5, 0.5], "a dog": [0.5, 0.5, 0.9, 0.9]}',
     [("a cat", [0.1, 0.1, 0.5, 0.5]), ("a dog", [0.5, 0.5, 0.9, 0.9])]),
    # the reasoning echoes the current objects first: the updated section wins
    ("Current objects:\n- a cat [0.0, 0.0, 0.2, 0.2]\nReasoning: move it.\nUpdated objects:\n- a cat [0.5, 0.5, 0.9, 0.9]",
     [("a cat", [0.5, 0.5, 0.9, 0.9])]),
    # parentheses as boxes, trailing comma
    ("Objects:\n- a kite (0.1, 0.1, 0.3, 0.3)\n- a boy [0.4, 0.5, 0.7, 0.95,]",
     [("a kite", [0.1, 0.1, 0.3, 0.3]), ("a boy", [0.4, 0.5, 0.7, 0.95])]),
]


@pytest.mark.parametrize("text,expected", REAL_ANSWERS)
def test_real_answers(text, expected):
    assert names_boxes(parse_layout(text)) == expected


@pytest.mark.parametrize("text", [
    "Reasoning: the image matches.\nUpdated objects:\n",
    "Reasoning: the image matches.\nUpdated Objects: []",
    "Reasoning: the image matches.\n**Updated objects:** none",
    '{"reasoning": "matches", "objects": []}',
])
def test_empty_updated_section_is_an_empty_layout(text):
    assert parse_layout(text).is_empty


@pytest.mark.parametrize("text,message", [
    ("", "empty"),
    ("I'm sorry, but I can't help with that.", "no boxes"),
    ("Objects:\n- a cat [0.1, 0.2, 0.3]", "3 numbers"),
    ("Objects:\n- a cat [0.1, 0.2, 0.3, 0.4, 0.5]", "5 numbers"),
    ("Objects:\n- a cat [nan, 0.1, 0.2, 0.3]", "non-finite"),
    ("Objects:\n- a cat [0.1, inf, 0.2, 0.3]", "non-finite"),
    ("Objects:\n- a cat [zero, one, two, three]", "no boxes"),
    ("Updated objects:\nthe image is fine as it is", "no boxes"),
    ("Objects: [0.1, 0.1, 0.5, 0.5]", "no object description"),
    ("Objects:\n- a cat [0.5, 0.6, 0.4, 0.3]\n- a dog [0.3, 0.3, 0.9, 0.9]", "out of order"),
    ("Objects:\n- a cat [0, 0, 5000, 5000]", "cannot be normalized"),
    ("Objects:\n- a cat [0.9, 0.9, 0.5, 0.5]", "out of order"),
])
def test_rejected_with_the_typed_error(text, message):
    with pytest.raises(LayoutParseError, match=message) as info:
        parse_layout(text)
    assert isinstance(info.value, GuidanceError)


def test_scales_are_read_and_recorded():
    px = parse_layout("Objects:\n- a cat [64, 128, 256, 512]", image_size=(512, 512))
    assert px.objects[0].box.as_list() == [0.125, 0.25, 0.5, 1.0]
    assert "pixels" in px.repairs[0]
    permille = parse_layout("Objects:\n- a cat [100, 200, 500, 900]")
    assert permille.objects[0].box.as_list() == pytest.approx([0.1, 0.2, 0.5, 0.9])
    assert "0..1000" in permille.repairs[0]
    percent = parse_layout("Objects:\n- a cat [10, 20, 50, 90]")
    assert "0..100" in percent.repairs[0]


def test_xywh_answers_are_converted_once_for_the_whole_layout():
    layout = parse_layout("Updated Objects: ['steam boat [0.302, 0.293, 0.335, 0.194]', 'dolphin [0.027, 0.324, 0.246, 0.160]']")
    assert names_boxes(layout) == [("steam boat", [0.302, 0.293, 0.637, 0.487]), ("dolphin", [0.027, 0.324, 0.273, 0.484])]
    assert "width, height" in layout.repairs[0]


def test_small_overshoot_is_clamped_and_recorded():
    layout = parse_layout("Objects: ['an angry dog[0.59, 0.232, 1.002, 0.678]']")
    assert layout.objects[0].box.x2 == 1.0
    assert "clamped" in layout.repairs[0]


@pytest.mark.parametrize("text,score", [
    ("Reasoning: all there.\nScore: 5", 5),
    ("**Score:** 4/5", 4),
    ("Score: [3]", 3),
    ("score = 2", 2),
    ("Reasoning: fine\nScore: 4.0", 4),
    ("Score: 4. The score reflects the missing bird.", 4),
    ("I would give it a score of 2.", 2),
    ('{"reasoning": "ok", "score": 3}', 3),
    ("3", 3),
    ("Overall: 4/5", 4),
    ("Score: four", 4),
    ("Rating: 1", 1),
])
def test_scores(text, score):
    assert parse_score(text) == score


@pytest.mark.parametrize("text", ["", "Score: 6", "Score: 0", "Score: NaN", "Score: 4.5", "Score: excellent",
                                  "I cannot evaluate images.", "It has 3 cats and 2 dogs.", '{"score": null}', "Score: 10/10"])
def test_bad_scores(text):
    with pytest.raises(ScoreParseError):
        parse_score(text)


def test_reasoning_extraction():
    assert extract_reasoning("Reasoning: The cat is there.\nScore: 4") == "The cat is there."
    assert extract_reasoning("**Reasoning:** swap them.\nUpdated objects:\n- a [0,0,1,1]") == "swap them."
    assert extract_reasoning("Move the bird. Objects: - a bird [0,0,.2,.2]") == "Move the bird."
    assert extract_reasoning(None) == ""  # type: ignore[arg-type]


# -- properties -------------------------------------------------------------------------------

TOKENS = list("abc xyz0123456789.,-:'\"[](){}\n*#/eEnaifINF") + [
    "Objects:", "Updated objects:", "Score:", "nan", "[0.1, 0.2, 0.3, 0.4]", "1e999", '{"score": ', '{"objects": [',
]
noisy_text = st.lists(st.sampled_from(TOKENS), max_size=80).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), noisy_text))
def test_any_text_gives_a_layout_or_the_typed_error(text):
    try:
        layout = parse_layout(text)
    except LayoutParseError:
        return
    assert isinstance(layout, Layout)
    for o in layout:
        assert 0 <= o.box.x1 < o.box.x2 <= 1 and 0 <= o.box.y1 < o.box.y2 <= 1 and o.name.strip()


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=300), noisy_text))
def test_any_text_gives_a_score_or_the_typed_error(text):
    try:
        score = parse_score(text)
    except ScoreParseError:
        return
    assert score in (1, 2, 3, 4, 5)


@st.composite
def layouts(draw):
    n = draw(st.integers(1, 5))
    objs = []
    for i in range(n):
        x1 = round(draw(st.floats(0.0, 0.8)), 3)
        y1 = round(draw(st.floats(0.0, 0.8)), 3)
        x2 = round(draw(st.floats(x1 + 0.05, 1.0)), 3)
        y2 = round(draw(st.floats(y1 + 0.05, 1.0)), 3)
        name = draw(st.sampled_from(["a cat", "a toy doctor's kit", "a red, shiny apple", "two dogs", "a man (old)"]))
        objs.append(LayoutObject(name=f"{name} {i}", box=Box.of([x1, y1, x2, y2])))
    return Layout(objects=objs)


def _render(layout, style):
    if style == "lines":
        return "Reasoning: ok.\nUpdated objects:\n" + layout.to_lines()
    if style == "thesis":
        return "Objects: [" + ", ".join(f"'{o.name}[{', '.join(map(str, o.box.as_list()))}]'" for o in layout) + "]"
    if style == "json":
        return json.dumps({"objects": [{"name": o.name, "box": o.box.as_list()} for o in layout]})
    return "\n".join(f"{i + 1}. **{o.name}**: {o.box.as_list()}" for i, o in enumerate(layout))


@settings(max_examples=200, deadline=None)
@given(layouts(), st.sampled_from(["lines", "thesis", "json", "markdown"]))
def test_layouts_round_trip_through_every_format(layout, style):
    parsed = parse_layout(_render(layout, style))
    assert parsed.names == layout.names
    assert parsed.same_as(layout, tolerance=1e-6)
