from mllm_guidance.config import make_config
from mllm_guidance.run_settings import make_settings
from tests.nodes.helpers import PlaceNode
from mllm_guidance.state import GuidanceState
from tests.conftest import make_context, make_runtime
from tests.fakes import PLACE


def test_place_sends_the_prompt_and_keeps_the_layout(tmp_path, prompt):
    ctx = make_context(tmp_path, {"place": [PLACE]})
    rt = make_runtime(ctx)
    out = PlaceNode(make_config())(GuidanceState(prompt=prompt), rt)
    [(step, messages)] = ctx.mllm.calls
    assert step == "place" and f"User prompt: {prompt}" in messages[1].content[0]["text"]
    assert out["plan"].layout.names == ["a man sitting", "a tree", "a bird"] and out["plan"].source == "place"
    assert out["correct_done"] is False
    assert "usage" not in out and len(out["call_ids"]) == 1  # the costs are in the call log, counted by finish
    assert [(c["id"], c["input_tokens"]) for c in ctx.store.calls()] == [(out["call_ids"][0], 100)]
    assert {"event": "step", "step": "place", "round": 0, "objects": 3} in rt.stream_writer


def test_place_without_correction_is_done(tmp_path, prompt):
    ctx = make_context(tmp_path, {"place": [PLACE]})
    assert PlaceNode(make_config(mode="place"))(GuidanceState(prompt=prompt), make_runtime(ctx))["correct_done"]


def test_place_retries_with_the_error_then_records_the_failure(tmp_path, prompt):
    ctx = make_context(tmp_path, {"place": ["I cannot do that.", "Objects: []", "still nothing"]})
    out = PlaceNode(make_config(parse_retries=2))(GuidanceState(prompt=prompt), make_runtime(ctx))
    calls = ctx.mllm.calls
    assert len(calls) == 3
    # the second call carries the first answer and the parse error back to the MLLM
    assert calls[1][1][-2].content == "I cannot do that."
    assert "could not be used: no boxes found" in calls[1][1][-1].content
    assert "the layout is empty" in calls[2][1][-1].content
    assert out["plan"].layout.is_empty and out["correct_done"]
    [failure] = out["failures"]
    assert failure.step == "place" and failure.attempts == 3
    assert len(out["call_ids"]) == 3
    logged = ctx.store.calls()
    assert [c["attempt"] for c in logged] == [1, 2, 3] and logged[0]["error"]


def test_structured_place(tmp_path, prompt):
    answer = {"reasoning": "under the tree", "objects": [{"name": "a man", "box": [0.1, 0.5, 0.4, 0.95]}]}
    ctx = make_context(tmp_path, {"place": [{"reasoning": "x", "objects": [{"name": "a man", "box": [0.1, 0.5]}]}, answer]})
    out = PlaceNode(settings=make_settings(structured_steps={"place"}))(GuidanceState(prompt=prompt), make_runtime(ctx))
    assert out["plan"].layout.names == ["a man"] and out["plan"].reasoning == "under the tree"
    assert "2 numbers" in ctx.mllm.calls[1][1][-1].content
    assert ctx.store.calls()[1]["tool_calls"][0]["args"]["reasoning"] == "under the tree"
