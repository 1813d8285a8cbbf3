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


# -- hostile answers (issue 10, items 4, 5 and 9) ---------------------------------------------

from datetime import timedelta  # noqa: E402

from mllm_guidance.layout import MAX_OBJECTS  # noqa: E402
from mllm_guidance.prompts import parse as parse_module  # noqa: E402
from mllm_guidance.prompts.parse import MAX_ANSWER_CHARS, MAX_JSON_DEPTH, strip_reasoning  # noqa: E402

HUGE = "9" * 5000  # past Python's 4,300-digit limit for int()


@pytest.mark.parametrize("text", [
    '{"objects": [{"name": "a cat", "box": [' + HUGE + ', 0, 1, 1]}]}',
    "Objects:\n- a cat [" + HUGE + ", 0, 1, 1]",
    '{"a cat": [0.1, 0.1, 0.5, -' + HUGE + ']}',
])
def test_huge_numbers_in_a_layout_are_the_typed_error(text):
    with pytest.raises(LayoutParseError, match="non-finite"):
        parse_layout(text)


@pytest.mark.parametrize("text", ['{"reasoning": "ok", "score": ' + HUGE + "}", "Score: " + HUGE, HUGE])
def test_huge_numbers_as_a_score_are_the_typed_error(text):
    with pytest.raises(ScoreParseError) as info:
        parse_score(text)
    assert len(str(info.value)) < 300  # the message quotes a short piece, not 5,000 digits


@pytest.mark.parametrize("style", ["lines", "json"])
def test_more_objects_than_the_cap_is_the_typed_error_naming_it(style):
    many = Layout.from_pairs([("a cat", [0.1, 0.1, 0.5, 0.5])] * MAX_OBJECTS)
    over = [{"name": "a cat", "box": [0.1, 0.1, 0.5, 0.5]}] * 1000
    text = json.dumps({"objects": over}) if style == "json" else "Objects:\n" + "\n".join(["- a cat [0.1, 0.1, 0.5, 0.5]"] * 1000)
    with pytest.raises(LayoutParseError, match=f"1000 objects; at most {MAX_OBJECTS}"):
        parse_layout(text)
    assert len(parse_layout(_render(many, style))) == MAX_OBJECTS  # the cap itself is accepted


def test_overlong_answers_are_the_typed_error():
    text = "Objects:\n- a cat [0.1, 0.1, 0.5, 0.5]\n" + "x" * MAX_ANSWER_CHARS
    with pytest.raises(LayoutParseError, match="characters long; keep it under 65,536"):
        parse_layout(text)
    with pytest.raises(ScoreParseError, match="characters long"):
        parse_score("Score: 4\n" + " " * MAX_ANSWER_CHARS)
    # a long reasoning block does not count against the answer
    assert parse_score("<think>" + "hmm " * MAX_ANSWER_CHARS + "</think>Score: 4") == 4


@pytest.mark.parametrize("text", [
    "[" * 4000,
    '{"a": ' * 2000,
    '["' * 2000,
    "[" * 2000 + "x" + "]" * 2000,
    "[" * 2000 + "]" * 2000,
])
def test_the_json_scan_does_not_decode_from_every_bracket(text, monkeypatch):
    """A bracket run made the old scan decode to the end of the text from every bracket:
    quadratic. Only openers of balanced spans at most MAX_JSON_DEPTH deep are tried now."""
    tries = []
    real = json.JSONDecoder.raw_decode

    def counting(self, s, idx=0):
        tries.append(idx)
        return real(self, s, idx)

    monkeypatch.setattr(json.JSONDecoder, "raw_decode", counting)
    for parse in (parse_layout, parse_score):
        tries.clear()
        try:
            parse(text)
        except (LayoutParseError, ScoreParseError):
            pass
        assert len(tries) <= MAX_JSON_DEPTH + 1


def test_json_candidates_match_what_the_decoder_reads():
    """Every position where json can decode an array or object is a candidate (strings with
    brackets and escaped quotes included), so no answer the old scan read is lost."""
    text = 'x [1, "a]\\"[", {"k": "}"}] y {"objects": [{"name": "a [b]", "box": [0.1, 0.1, 0.5, 0.5]}]} ]['
    decoder = json.JSONDecoder()
    readable = []
    for i, c in enumerate(text):
        if c in "[{":
            try:
                decoder.raw_decode(text, i)
                readable.append(i)
            except ValueError:
                pass
    assert set(readable) <= set(parse_module._json_spans(text))
    assert parse_layout(text).names == ["a [b]"]


@pytest.mark.parametrize("text,names", [
    # DeepSeek-R1 / Qwen3: a closed block before the answer, boxes inside it are drafts
    ("<think>First try: a dog [0.1, 0.1, 0.3, 0.3]. Hmm, no.</think>\n- a cat [0.5, 0.5, 0.9, 0.9]", ["a cat"]),
    ('<think>{"objects": [{"name": "a ghost", "box": [0, 0, 1, 1]}]} is too big</think>\nObjects:\n- a cat [0.5, 0.5, 0.9, 0.9]', ["a cat"]),
    # QwQ: the chat template opened the block, only the closing tag is in the reply
    ("so a dog [0.1, 0.1, 0.3, 0.3] maybe\n</think>\n\nObjects:\n- a cat [0.5, 0.5, 0.9, 0.9]", ["a cat"]),
    ("<THINKING>\na bird [0.1, 0.1, 0.3, 0.3]\n</thinking>- a cat [0.5, 0.5, 0.9, 0.9]", ["a cat"]),
])
def test_reasoning_blocks_are_not_read_as_objects(text, names):
    assert parse_layout(text).names == names


def test_reasoning_blocks_do_not_override_the_score():
    assert parse_score("<think>I would say Score: 2, no, higher.</think>\n4") == 4
    assert parse_score("Score: 4\n<think>or score: 1?</think>") == 4
    assert extract_reasoning("<think>long thoughts</think>Reasoning: the cat is there.\nScore: 4") == "the cat is there."


@pytest.mark.parametrize("parse,error", [(parse_layout, LayoutParseError), (parse_score, ScoreParseError)])
def test_an_unclosed_reasoning_block_is_the_typed_error(parse, error):
    with pytest.raises(error, match="only a reasoning block"):
        parse("<think>Let me place a cat [0.1, 0.1, 0.5, 0.5] and score it 4/5 ...")


def test_strip_reasoning():
    assert strip_reasoning("a<think>b</think>c<think>d") == "ac"
    assert strip_reasoning("b</think>c") == "c"
    assert strip_reasoning("no tags < here >") == "no tags < here >"


@pytest.mark.parametrize("text", [
    "Score: 4/10", "**Score:** 8/10", "Score: 4 out of 10", "Score: 80%", "Rating: 3/4", '{"score": "4/10"}',
    "Reasoning: fine.\nScore: 7 / 10", "Score: four out of 10",
])
def test_scores_on_other_scales_are_refused(text):
    with pytest.raises(ScoreParseError, match="another scale; score on the 1 to 5 rubric"):
        parse_score(text)


@pytest.mark.parametrize("text,score", [("Score: 4/5", 4), ("Score: 3 out of 5", 3), ('{"score": "5/5"}', 5), ("Score: 2 / 5.", 2), ("Score: four out of 5", 4)])
def test_scores_out_of_five_still_read(text, score):
    assert parse_score(text) == score


def test_object_names_lose_escape_codes_and_control_characters():
    text = "Objects:\n- \x1b[2J\x1b]0;pwned\x07a \x1b[31mred\x1b[0m\x00 car\u202e [0.1, 0.1, 0.5, 0.5]\n- a \ud800 dog [0.5, 0.5, 0.9, 0.9]"
    assert parse_layout(text).names == ["a red car", "a \ufffd dog"]


# -- properties: any text, bounded time -------------------------------------------------------

RUNS = ["[", "{", '["', '{"a":', "(", ")", "]", "<think>", "</think>", "<", " ", "\n", "1. ", "- ", "objects ", "score ",
        "9", "\\", '"', "\x00", "\x1b[", "\ud800", "漢", "a cat [0.1, 0.1, 0.5, 0.5]\n", '{"name": "a", "box": [0.1, 0.1, 0.5, 0.5]},']
hostile_text = st.builds(
    lambda head, run, count, tail: head + run * count + tail,
    st.sampled_from(["", "Objects:\n", "Updated objects:", "Score:", "Reasoning:", "<think>", '{"objects": [', "- a cat"]),
    st.sampled_from(RUNS),
    st.integers(0, 16_000),
    st.sampled_from(["", "]", "}", "\nScore: 4", " [0.1, 0.1, 0.5, 0.5]", "</think>", ":"]),
)


@settings(max_examples=150, deadline=timedelta(seconds=3))
@given(hostile_text)
def test_hostile_text_gives_a_value_or_the_typed_error_in_bounded_time(text):
    """Runs of one token up to 16k long (the shapes that made the old scans quadratic: 2.3 s
    at 4 KB, 20 s at 32 KB); the deadline is a hang guard with wide headroom, not a benchmark
    (benchmarks/parser_adversarial.py measures)."""
    try:
        layout = parse_layout(text)
        assert len(layout) <= MAX_OBJECTS
    except LayoutParseError as exc:
        assert len(str(exc)) < 500
    try:
        assert parse_score(text) in (1, 2, 3, 4, 5)
    except ScoreParseError as exc:
        assert len(str(exc)) < 500
    extract_reasoning(text)


def test_a_structured_score_too_large_for_text_is_the_typed_error():
    from mllm_guidance.prompts.schemas import ScoreAnswer, score_from_answer

    with pytest.raises(ScoreParseError, match="outside 1..5"):
        score_from_answer(ScoreAnswer(reasoning="x", score=10**5000))


def test_a_reply_is_cleaned_before_it_is_sent_back():
    from mllm_guidance.prompts.parse import clean_reply

    reply = "<think>long</think>Objects:\n- a \ud800 cat" + "x" * (2 * MAX_ANSWER_CHARS)
    cleaned = clean_reply(reply)
    cleaned.encode("utf-8")  # strict UTF-8, as HTTP clients encode requests
    assert cleaned.startswith("Objects:\n- a \ufffd cat") and len(cleaned) < MAX_ANSWER_CHARS + 20


@pytest.mark.parametrize("answer, message", [
    ("Objects:\n- a cat [0.9, 0.9, 0.1, 0.1]", "out of order"),  # swapped corners or x/y/w/h: ask again
    ('{"objects": [{"name": "a cat", "box": [5e-324, 0, 1e-320, 5e-324]}]}', "no.* area"),
    ("Objects:\n- \u200b\u200b\u200b [0.1, 0.1, 0.5, 0.5]", "no object description"),
    ('{"objects": [{"name": 5, "box": [0.1, 0.1, 0.5, 0.5]}]}', "name is '5', not text"),
])
def test_parser_oddities_are_readable_parse_errors(answer, message):
    """Issue 20, item 11: each once passed silently (a corner sliver, a zero-area box, an invisible
    name, the JSON text read as a name); each is now a parse error the model gets back."""
    from mllm_guidance.errors import LayoutParseError

    with pytest.raises(LayoutParseError, match=message) as refused:
        parse_layout(answer)
    assert len(str(refused.value)) < 300


def test_x_y_w_h_is_still_read_where_swapped_corners_cannot_explain_it():
    layout = parse_layout("Objects:\n- a cat [0.6, 0.2, 0.3, 0.4]\n- a dog [0.1, 0.5, 0.3, 0.3]")
    assert layout.objects[0].box.as_list() == pytest.approx([0.6, 0.2, 0.9, 0.6])
