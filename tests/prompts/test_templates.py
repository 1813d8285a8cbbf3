import json

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from mllm_guidance.errors import ConfigError
from mllm_guidance.layout import Box, Layout
from mllm_guidance.prompts.templates import STEPS, export_templates, load_templates

THESIS_RULES = {
    # every rule and rubric of the thesis's prompts, as the project words them
    "place": ["[0, 0]", "[1, 1]", "[x1, y1, x2, y2]", "0.1 wide and 0.1 tall", "One object per box",
              "should not overlap", "reasonable guess", "actions and relations", "no other explanation"],
    "self_correct": ["number of objects", "attributes", "within [0, 1]", "Minimal changes", "Overlaps",
                     "reason for each change", "at most 50 words", "Updated objects:", "0.1 wide and 0.1 tall",
                     "more than half of another box", "more than half of itself inside another box", "interactions"],
    "reason": ["1 to 5", "1: the image depicts none", "2: the image depicts some elements but ignores",
               "3: the image depicts most elements and at least one", "4: the image depicts all elements and most",
               "5: the image depicts all elements and all", "at most 20 words", "nothing else in the score section"],
    "align": ["leave the updated objects section empty", "attribute or action", "overlap without either one covering most",
              "add, delete or move", "0.1 wide and 0.1 tall", "more than half of another box", "at most 50 words",
              "One object per box", "relations"],
}


def test_builtin_set_carries_every_rule():
    t = load_templates()
    for step, phrases in THESIS_RULES.items():
        text = t.steps[step].instructions
        for phrase in phrases:
            assert phrase in text, f"{step}: missing {phrase!r}"


def test_examples_use_one_convention_and_are_rendered():
    t = load_templates()
    # converted from the thesis's x/y/w/h: 'gray dog [0.186, 0.592, 0.449, 0.408]' -> corners
    assert "- gray dog [0.186, 0.592, 0.635, 1]" in t.steps["self_correct"].instructions
    assert "- steam boat [0.302, 0.293, 0.637, 0.487]" in t.steps["align"].instructions
    assert "Score: 4" in t.steps["reason"].instructions
    from importlib import resources
    data = resources.files("mllm_guidance.prompts").joinpath("data")
    for step in STEPS:
        for ex in json.loads(data.joinpath(f"{step}.examples.json").read_text()):
            for obj in (ex.get("objects") or []) + (ex.get("current") or []):
                Box.of(obj["box"])  # strict corners, inside [0, 1]


def test_version_is_stable_and_changes_with_an_override(tmp_path):
    a, b = load_templates(), load_templates()
    assert a.version == b.version and a.version.startswith("builtin-v1+")
    (tmp_path / "reason.txt").write_text("Judge it.\n=== request ===\nPrompt: $prompt\n")
    custom = load_templates(tmp_path)
    assert custom.version.startswith("custom+") and custom.version != a.version
    assert custom.steps["reason"].instructions == "Judge it."
    assert custom.steps["place"].instructions == a.steps["place"].instructions
    assert "reason.txt" in custom.source


def test_user_examples_override(tmp_path):
    (tmp_path / "place.examples.json").write_text(json.dumps([{"prompt": "a kite", "objects": [{"name": "a kite", "box": [0.1, 0.1, 0.4, 0.4]}]}]))
    t = load_templates(tmp_path)
    assert "User prompt: a kite\nObjects:\n- a kite [0.1, 0.1, 0.4, 0.4]" in t.steps["place"].instructions
    assert "dolphin" not in t.steps["place"].instructions


@pytest.mark.parametrize("filename,content,message", [
    ("place.txt", "no split line $examples", "request part"),
    ("self_correct.txt", "x\n=== request ===\n$prompt only", "missing ['objects']"),
    ("place.txt", "x\n=== request ===\n$prompt $unknown", "unknown ['unknown']"),
    ("place.txt", "x $other\n=== request ===\n$prompt", "only $examples"),
    ("place.examples.json", "{not json", "not a list"),
    ("place.examples.json", '[{"prompt": "p", "objects": [{"name": "a", "box": [0.1, 0.1, 0.2, 0.05]}]}]', "normalized"),
    ("reason.examples.json", '[{"prompt": "p", "reasoning": "r"}]', "needs 'score'"),
])
def test_bad_user_files_are_config_errors(tmp_path, filename, content, message):
    (tmp_path / filename).write_text(content)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("$", r"\$")):
        load_templates(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_templates(tmp_path / "nope")


def test_messages_put_the_static_part_first():
    t = load_templates()
    layout = Layout.from_pairs([("a cat", [0.1, 0.1, 0.5, 0.5])])
    msgs = t.messages("self_correct", "a cat on a mat", objects=layout)
    assert isinstance(msgs[0], SystemMessage) and msgs[0].content == t.steps["self_correct"].instructions
    assert isinstance(msgs[1], HumanMessage)
    assert msgs[1].content[0]["text"] == "User prompt: a cat on a mat\nCurrent objects:\n- a cat [0.1, 0.1, 0.5, 0.5]"
    # the static part is byte-identical across prompts, so provider caching can reuse it
    assert t.messages("self_correct", "another", objects=layout)[0].content == msgs[0].content


def test_image_goes_as_a_standard_image_block():
    from mllm_guidance.images import ModelImage

    msgs = load_templates().messages("reason", "a cat", image=ModelImage(b"\xff\xd8 fake", "image/jpeg"))
    block = msgs[1].content[1]
    assert block["type"] == "image" and block["mime_type"] == "image/jpeg" and block["base64"] == "/9ggZmFrZQ=="


def test_export_round_trips(tmp_path):
    written = export_templates(tmp_path / "mine")
    assert len(written) == 10  # five steps (compare: pairwise judging), a template and examples each
    assert load_templates(tmp_path / "mine").steps["place"].instructions == load_templates().steps["place"].instructions
    with pytest.raises(ConfigError, match="already exists"):
        export_templates(tmp_path / "mine")


def test_optional_blocks_are_checked_and_required_before_a_run(tmp_path):
    from mllm_guidance import guide
    from tests.fakes import RecordingChatModel

    (tmp_path / "align.txt").write_text("Align it.\n=== request ===\nPrompt: $prompt\n=== surprise ===\n$prompt\n")
    with pytest.raises(ConfigError, match="unknown block '=== surprise ==='"):
        load_templates(tmp_path)
    (tmp_path / "align.txt").write_text("Align it.\n=== request ===\nPrompt: $prompt\n")
    bare = load_templates(tmp_path)
    assert bare.steps["align"].blocks == {}
    model = RecordingChatModel(replies={})
    with pytest.raises(ConfigError, match="no '=== empty answer ===', '=== evaluation ===', '=== layout ===' block"):
        guide("a cat on a sofa", mllm=model, generator="sketch", settings={"templates_dir": str(tmp_path)},
              run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists() and model.calls == []


# sha256 (first 16 hex) of the built-in instructions, examples rendered, per step (and per mode where a
# mode has its own examples): moving how a step renders its examples must not change a byte of them.
RENDERED = {
    "place": "2edd16916ea85c54", "self_correct": "72754539e19608ed", "reason": "30ce85089632cd33",
    "align": "1b1f83a820ac92ae", ("align", "align"): "b49297fff0a4d17c", "compare": "f66c14d6f6d5914d",
}


def test_rendered_instructions_are_byte_identical_for_every_step_and_mode():
    import hashlib

    templates = load_templates()
    assert set(templates.steps) == set(STEPS)
    for step, template in templates.steps.items():
        for mode in ("plain", "place", "place+correct", "align", "full", *template.by_mode):
            digest = hashlib.sha256(template.instructions_for(mode).encode()).hexdigest()[:16]
            assert digest == RENDERED.get((step, mode), RENDERED[step]), (step, mode)


def test_each_step_renders_its_example_fields_in_its_own_order():
    from mllm_guidance.prompts.templates import Example

    cat, dog = [{"name": "a cat", "box": [0.1, 0.2, 0.5, 0.6]}], [{"name": "a dog", "box": [0, 0, 1, 1]}]
    example = Example(prompt="p", objects=cat, current=dog, reasoning="r", score=3, better="B")
    rendered = {step: STEPS[step].render_example(example) for step in STEPS}
    assert rendered == {
        "place": "User prompt: p\nObjects:\n- a cat [0.1, 0.2, 0.5, 0.6]",
        "self_correct": "User prompt: p\nCurrent objects:\n- a dog [0, 0, 1, 1]\nReasoning: r\n"
                        "Updated objects:\n- a cat [0.1, 0.2, 0.5, 0.6]",
        "reason": "User prompt: p\nReasoning: r\nScore: 3",
        "align": "User prompt: p\nReasoning: r\nUpdated objects:\n- a cat [0.1, 0.2, 0.5, 0.6]",
        "compare": "User prompt: p\nReasoning: r\nBetter: B",
    }
    # an empty layout is no lines where the step may answer with one (align: "the image matches")
    assert STEPS["align"].render_example(Example(prompt="p", objects=[], reasoning="r")) == \
        "User prompt: p\nReasoning: r\nUpdated objects:"
    assert STEPS["place"].render_example(Example(prompt="p", objects=[])) == "User prompt: p\nObjects:\n"
