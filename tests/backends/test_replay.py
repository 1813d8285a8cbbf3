import json

import pytest

from mllm_guidance import guide
from mllm_guidance.backends.mllm import resolve_mllm
from mllm_guidance.backends.replay import ReplayChatModel
from mllm_guidance.errors import ReplayError
from tests.fakes import PLACE, CountingGenerator, RecordingChatModel, score

PROMPT = "A red kite above two boys on a beach."


def record(tmp_path, **cfg):
    replies = {"place": ["nonsense", PLACE], "self_correct": [PLACE], "reason": [score(2), score(5)],
               "align": ["Updated objects:\n- a kite [0.3, 0.05, 0.6, 0.3]\n- a boy [0.1, 0.5, 0.4, 0.95]"]}
    return guide(PROMPT, mllm=RecordingChatModel(replies=replies), generator=CountingGenerator(), config=cfg, run_dir=tmp_path / "rec")


def test_a_recorded_run_replays_the_same_path_with_another_generator(tmp_path):
    original = record(tmp_path)
    replay = resolve_mllm(f"replay:{tmp_path / 'rec'}")
    assert isinstance(replay, ReplayChatModel)
    gen = CountingGenerator()
    again = guide(PROMPT, mllm=replay, generator=gen, run_dir=tmp_path / "again")
    assert [r.score for r in again.rounds] == [r.score for r in original.rounds]
    assert [r.layout for r in again.rounds] == [r.layout for r in original.rounds]
    assert len(again.failures) == len(original.failures) == 0
    assert again.usage.mllm_calls == original.usage.mllm_calls == 6  # the unreadable place answer is replayed too


def test_structured_runs_replay_their_tool_calls(tmp_path):
    layout = {"reasoning": "r", "objects": [{"name": "a kite", "box": [0.3, 0.05, 0.6, 0.3]}]}
    model = RecordingChatModel(replies={"place": [dict(layout)], "reason": [{"__tool__": "ScoreAnswer", "reasoning": "ok", "score": 5}]})
    guide(PROMPT, mllm=model, generator="sketch", config={"self_correct": False}, settings={"structured_steps": True},
          run_dir=tmp_path / "s")
    again = guide(PROMPT, mllm=f"replay:{tmp_path / 's' / 'run.json'}", generator="sketch",
                  config={"self_correct": False}, settings={"structured_steps": True}, run_dir=tmp_path / "s2")
    assert again.score == 5 and again.layout.names == ["a kite"]


def test_mismatch_and_exhaustion(tmp_path):
    record(tmp_path)
    with pytest.raises(ReplayError, match="is for the prompt"):
        guide("Something else entirely", mllm=f"replay:{tmp_path / 'rec'}", generator="sketch", run_dir=tmp_path / "x")
    with pytest.raises(ReplayError, match="no more 'align' answers"):
        guide(PROMPT, mllm=f"replay:{tmp_path / 'rec'}", generator="sketch", config={"is_good": lambda s, r: False}, run_dir=tmp_path / "y")


@pytest.mark.parametrize("content,message", [("not json", "not valid JSON"), (json.dumps({"x": 1}), "needs 'prompt' and 'calls'")])
def test_bad_recordings(tmp_path, content, message):
    (tmp_path / "run.json").write_text(content)
    with pytest.raises(ReplayError, match=message):
        ReplayChatModel.from_path(tmp_path)
