"""judge and align on an image the caller already has, outside the loop."""

from __future__ import annotations

import json

from PIL import Image

from mllm_guidance.layout import Layout
from mllm_guidance.one_step import align, judge
from tests.fakes import ALIGNED, RecordingChatModel, score


def test_judge_and_align_ask_the_step_and_log_the_calls(tmp_path):
    image = Image.new("RGB", (64, 64), (200, 10, 10))
    model = RecordingChatModel(replies={"reason": ["no score here", score(4, "the bird is in the tree")], "align": [ALIGNED]})
    verdict = judge("a bird in a tree", image, model, run_dir=tmp_path / "j")
    assert verdict.score == 4 and "bird is in the tree" in verdict.reasoning and verdict.error is None
    calls = [json.loads(line) for line in (tmp_path / "j" / "calls.jsonl").read_text().splitlines()]
    assert [c["attempt"] for c in calls] == [1, 2] and calls[0]["error"]  # the unreadable answer was asked again
    before = Layout.from_pairs([("a bird", [0.6, 0.15, 0.75, 0.3]), ("a tree", [0.2, 0.05, 0.9, 0.9])])
    proposal = align("a bird in a tree", image, before, model, run_dir=tmp_path / "a")
    assert proposal.layout is not None and [o.name for o in proposal.layout.objects][-1] == "a bird perched on a branch"
    step, messages = model.calls[-1]
    assert step == "align" and "a bird [" in " ".join(str(m.content) for m in messages)  # the drawn layout was sent
