import json

import pytest

from mllm_guidance import guide, resume
from mllm_guidance.errors import BackendError
from tests.fakes import ALIGNED, PLACE, CountingGenerator, RecordingChatModel, score


def test_run_json_keeps_used_and_abandoned_calls_apart(tmp_path):
    replies = {"place": [PLACE], "self_correct": [PLACE], "reason": [score(3), score(5)], "align": [ALIGNED]}
    model = RecordingChatModel(replies=replies)
    # the generator crashes on round 1, after align; resuming reruns only generate
    with pytest.raises(BackendError):
        guide("A man under a tree.", mllm=model, generator=CountingGenerator(fail_on=2), run_dir=tmp_path / "r")
    resume(tmp_path / "r", mllm=model, generator=CountingGenerator())
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert [c["step"] for c in run["calls"]] == ["place", "self_correct", "reason", "align", "reason"]
    assert run["abandoned_calls"] == []
    assert run["usage"]["mllm_calls"] == 5 and run["usage"]["generator_calls"] == 2
    assert run["versions"]["python"] and run["config"]["max_align_rounds"] == 5
    text = (tmp_path / "r" / "run.json").read_text()
    assert "base64" not in text and "iVBORw0KGgo" not in text  # no PNG bytes anywhere


def test_calls_of_a_crashed_step_are_marked_abandoned(tmp_path):
    crash = RuntimeError("connection reset")
    model = RecordingChatModel(replies={"place": [PLACE], "self_correct": ["garbage", crash]})
    with pytest.raises(BackendError, match="connection reset"):
        guide("A man under a tree.", mllm=model, generator=CountingGenerator(), run_dir=tmp_path / "r")
    model.replies["self_correct"] += [PLACE]
    model.replies["reason"] = [score(5)]
    # the resumed self-correct asks again: its earlier unreadable answer is kept as abandoned
    result = resume(tmp_path / "r", mllm=model, generator=CountingGenerator())
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert result.score == 5
    assert [c["reply"] for c in run["abandoned_calls"]] == ["garbage"]


def test_html_escapes_model_text(tmp_path):
    evil = "Reasoning: <script>alert(1)</script>\nScore: 5"
    guide("A cat <b>bold</b> on a mat.", mllm=RecordingChatModel(replies={"place": [PLACE], "self_correct": [PLACE], "reason": [evil]}),
          generator="sketch", run_dir=tmp_path / "r")
    html = (tmp_path / "r" / "report.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;" in html and "&lt;b&gt;bold" in html


def test_boxes_are_svg_over_each_image_and_scores_a_chart():
    from mllm_guidance.evidence.report import boxes_svg, score_chart

    layout = {"objects": [{"name": "a cat <b>", "box": {"x1": 0.1, "y1": 0.2, "x2": 0.5, "y2": 0.6}}]}
    svg = boxes_svg(layout, 640, 480)
    assert 'viewBox="0 0 640 480"' in svg and 'x="64.0" y="96.0" width="256.0" height="192.0"' in svg
    assert "a cat &lt;b&gt;" in svg and "<b>" not in svg  # model text is escaped
    assert boxes_svg(None, 64, 64) == ""
    rounds = [{"index": 0, "score": 2}, {"index": 1, "score": None}, {"index": 2, "score": 5}]
    chart = score_chart(rounds, best=2)
    assert chart.count("<circle") == 2 and "round 2: 5" in chart and 'r="7"' in chart  # the best is marked
    assert score_chart([{"index": 0, "score": None}], best=None) == ""  # nothing judged, no chart


def test_labels_fit_their_box_and_rules_are_information(tmp_path):
    from mllm_guidance.evidence.report import box_geometry

    name = "a very long description of a small red bird perched on the lowest branch of the old oak"
    geometry = box_geometry({"objects": [{"name": name, "box": {"x1": 0.8, "y1": 0.1, "x2": 0.95, "y2": 0.3}}]}, 512, 512)
    shape = geometry["shapes"][0]
    assert shape["label"].endswith("…") and len(shape["label"]) < 15 and shape["name"] == name  # the tooltip keeps it whole
    assert shape["tx"] + len(shape["label"]) * geometry["font"] * 0.56 <= 512  # inside the image
    # a man under a tree overlaps it: shown as a note on the layout, not as a warning on the result
    overlapping = ("Objects:\n- a man sitting [0.4, 0.6, 0.68, 0.96]\n- a tree [0.3, 0.04, 0.96, 0.92]")
    guide("A man is sitting under a tree.", mllm=RecordingChatModel(replies={"place": [overlapping], "self_correct": [overlapping],
                                                                             "reason": [score(5)]}),
          generator="sketch", run_dir=tmp_path / "r")
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Layout rules" in page and "lies inside" in page and "⚠" not in page and 'class="warn"' not in page
    assert 'class="frame plain"' in page and "the sketch draws its own" in page  # no second set of labels


def test_the_quick_start_recording_keeps_the_rules_it_is_shown_with():
    """The recording a newcomer replays first: every layout respects the rules its prompts state."""
    from pathlib import Path

    from mllm_guidance.layout import Layout

    record = json.loads((Path(__file__).parents[2] / "examples/recordings/man-under-tree.json").read_text())
    for r in record["rounds"]:
        assert r["layout_warnings"] == [] and Layout.model_validate(r["layout"]).rule_warnings() == []
