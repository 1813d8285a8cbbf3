"""Hostile MLLM answers through a whole run (issue 10, items 4, 5 and 9).

Each of these answers once stopped the run with an untyped exception, and stopped it again on
resume (the failing step re-ran and re-read the same answer). Now each is refused with the typed
parse error, fed back to the MLLM, recorded as a failure, and the run goes on to the next answer.
"""

import json

import pytest

from mllm_guidance import guide, resume
from mllm_guidance.layout import MAX_OBJECTS
from tests.conftest import PROMPT
from tests.fakes import ALIGNED, PLACE, CountingGenerator, RecordingChatModel, score

HOSTILE_LAYOUTS = {
    "huge number": '{"objects": [{"name": "a man", "box": [' + "9" * 5000 + ", 0, 1, 1]}]}",
    "lone surrogate": "Objects:\n- a man \ud800 [0.1, 0.45, 0.45] \udfff",
    "1000 identical objects": "Objects:\n" + "- a man [0.1, 0.45, 0.45, 0.95]\n" * 1000,
    "bracket run": "[" * 32_000,
    "only reasoning": "<think>a man [0.1, 0.45, 0.45, 0.95] ... and then",
}
HOSTILE_SCORES = {
    "huge number": '{"score": ' + "9" * 5000 + "}",
    "lone surrogate": "Reasoning: \ud800\nScore: \udfff",
    "other scale": "Reasoning: good.\nScore: 4/10",
    "bracket run": "[" * 32_000,
    "only reasoning": "<think>Score: 5 for sure",
}


@pytest.mark.parametrize("kind", list(HOSTILE_LAYOUTS))
def test_a_hostile_answer_is_refused_and_the_run_goes_on(tmp_path, kind):
    layout, judged = HOSTILE_LAYOUTS[kind], HOSTILE_SCORES.get(kind, "Score: 6")
    model = RecordingChatModel(replies={
        "place": [layout, PLACE],
        "self_correct": [layout, layout],
        "reason": [judged, judged, score(5)],
        "align": [ALIGNED],
    })
    result = guide(PROMPT, mllm=model, generator=CountingGenerator(), config={"parse_retries": 1}, run_dir=tmp_path / "run")
    assert result.stop_reason == "good" and result.score == 5
    assert [f.step for f in result.failures] == ["self_correct", "reason"]
    assert result.rounds[0].layout.names == ["a man sitting", "a tree", "a bird"]
    # every refusal was fed back to the MLLM with a short, typed reason
    for _step, messages in model.calls:
        if len(messages) > 2:
            assert messages[-1].content.startswith("Your answer could not be used: ") and len(messages[-1].content) < 600
    logged = json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))["calls"]
    assert sum(1 for c in logged if c["error"]) == 1 + 2 + 2
    assert sum(p.stat().st_size for p in (tmp_path / "run").rglob("*")) < 5_000_000
    # resuming the finished run reads it back without tripping over what it stored
    assert resume(tmp_path / "run", mllm=model, generator=CountingGenerator()).score == 5


def test_escape_codes_never_reach_the_names(tmp_path):
    answer = "Objects:\n- \x1b[2J\x1b[31ma man\x1b[0m sitting\u202e [0.1, 0.45, 0.45, 0.95]"
    model = RecordingChatModel(replies={"place": [answer], "self_correct": [answer], "reason": [score(5)]})
    result = guide(PROMPT, mllm=model, generator=CountingGenerator(), run_dir=tmp_path / "run")
    assert result.rounds[0].layout.names == ["a man sitting"]


def test_the_object_cap_is_well_above_real_layouts():
    assert MAX_OBJECTS >= 2 * 30  # GLIGEN's 30 slots, twice over


def test_a_huge_answer_is_stored_bounded_with_its_length_and_hash(tmp_path):
    """Issue 20, item 10: a 1.37 MB answer is refused by the parser and stored as its start and end
    (MAX_STORED_REPLY characters) with its length and SHA-256, in calls.jsonl, run.json and report.html;
    a reasoning model's long reply still replays to the same answer."""
    import hashlib

    huge = "Objects:\n" + "- a man [0.1, 0.45, 0.45, 0.95] " * 43_000
    thinking = "<think>" + "hmm " * 40_000 + "</think>" + PLACE
    model = RecordingChatModel(replies={"place": [huge, thinking], "self_correct": [PLACE], "reason": [score(5)]})
    result = guide(PROMPT, mllm=model, generator=CountingGenerator(), config={"parse_retries": 1}, run_dir=tmp_path / "run")
    assert result.score == 5 and len(huge) > 1_300_000
    calls = [json.loads(line) for line in (tmp_path / "run" / "calls.jsonl").read_text().splitlines()]
    first = calls[0]
    assert first["reply_chars"] == len(huge) and first["reply_sha256"] == hashlib.sha256(huge.encode()).hexdigest()
    assert len(first["reply"]) < 65_536 + 100 and "characters not stored" in first["reply"]
    assert first["reply"].startswith(huge[:1000]) and first["reply"].endswith(huge[-1000:])
    for name in ("calls.jsonl", "run.json", "report.html"):
        assert (tmp_path / "run" / name).stat().st_size < 1_000_000, name
    replayed = guide(PROMPT, mllm=f"replay:{tmp_path / 'run'}", generator=CountingGenerator(),
                     config={"parse_retries": 1}, run_dir=tmp_path / "again")
    assert replayed.rounds[0].layout == result.rounds[0].layout and replayed.score == 5
