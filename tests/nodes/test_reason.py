from mllm_guidance.config import make_config
from tests.nodes.helpers import ReasonNode
from tests.conftest import make_context, make_runtime
from tests.fakes import score
from tests.nodes.helpers import state_with_round


def test_sends_the_image_and_scores_it(tmp_path, prompt):
    ctx = make_context(tmp_path, {"reason": [score(3, "no bird")]})
    state = state_with_round(ctx, prompt)
    out = ReasonNode(make_config())(state, make_runtime(ctx))
    human = ctx.mllm.calls[0][1][1]
    image_block = human.content[1]
    assert image_block["type"] == "image" and image_block["mime_type"] == "image/jpeg"  # the default format
    import base64, io
    from PIL import Image
    assert Image.open(io.BytesIO(base64.b64decode(image_block["base64"]))).size == (64, 48)
    r = out["rounds"][-1]
    assert (r.score, r.good, r.reasoning) == (3, False, "no bird.")
    assert out["best"] == 0 and "stop_reason" not in out
    # the log holds a reference to the image file, never its bytes
    logged = ctx.store.calls()[0]
    assert logged["request"][1]["content"][1] == {"type": "image", "ref": "round-0.png"}
    assert "base64" not in str(logged)


def test_good_stops_and_becomes_best(tmp_path, prompt):
    ctx = make_context(tmp_path, {"reason": [score(4)]})
    state = state_with_round(ctx, prompt, score=5, rounds=2, best=0)
    out = ReasonNode(make_config(is_good=4))(state, make_runtime(ctx))
    assert out["stop_reason"] == "good" and out["best"] == 1


def test_ties_keep_the_earlier_round(tmp_path, prompt):
    ctx = make_context(tmp_path, {"reason": [score(3), score(4)]})
    state = state_with_round(ctx, prompt, score=3, rounds=2, best=0)
    assert "best" not in ReasonNode(make_config())(state, make_runtime(ctx))
    assert ReasonNode(make_config())(state, make_runtime(ctx))["best"] == 1


def test_unreadable_score_is_worst_and_recorded(tmp_path, prompt):
    ctx = make_context(tmp_path, {"reason": ["great picture!", "really great", "Score: 9"]})
    state = state_with_round(ctx, prompt, score=1, rounds=2, best=0)
    out = ReasonNode(make_config())(state, make_runtime(ctx))
    assert out["rounds"][-1].score is None and "best" not in out
    assert out["failures"][0].step == "reason" and "outside 1..5" in out["failures"][0].error


def test_callable_is_good_and_round_limit(tmp_path, prompt):
    ctx = make_context(tmp_path, {"reason": [score(4, "all there"), score(5)]})
    picky = make_config(is_good=lambda s, why: s >= 4 and "all there" in why)
    assert ReasonNode(picky)(state_with_round(ctx, prompt), make_runtime(ctx))["stop_reason"] == "good"
    out = ReasonNode(make_config(max_align_rounds=0))(state_with_round(ctx, prompt), make_runtime(ctx))
    assert out["stop_reason"] == "good"
