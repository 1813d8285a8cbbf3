from mllm_guidance.config import make_config
from tests.nodes.helpers import AlignNode
from tests.conftest import make_context, make_runtime
from tests.fakes import ALIGNED
from tests.nodes.helpers import LAYOUT, state_with_round


def run(tmp_path, prompt, replies, **cfg):
    ctx = make_context(tmp_path, {"align": replies})
    return ctx, AlignNode(make_config(**cfg))(state_with_round(ctx, prompt), make_runtime(ctx))


def test_new_layout_from_the_image(tmp_path, prompt):
    ctx, out = run(tmp_path, prompt, [ALIGNED])
    assert ctx.mllm.calls[0][1][1].content[1]["type"] == "image"
    assert out["plan"].source == "align" and "a bird perched on a branch" in out["plan"].layout.names
    assert out["align_rounds"] == 1 and "stop_reason" not in out


def test_empty_answer_means_aligned(tmp_path, prompt):
    _, out = run(tmp_path, prompt, ["Reasoning: it matches.\nUpdated objects:\n"])
    assert out["stop_reason"] == "aligned" and "plan" not in out


def test_unchanged_layout_with_the_same_seed_stops(tmp_path, prompt):
    _, out = run(tmp_path, prompt, ["Updated objects:\n" + LAYOUT.to_lines()])
    assert out["stop_reason"] == "align_unchanged"
    _, out = run(tmp_path / "b", prompt, ["Updated objects:\n" + LAYOUT.to_lines()], seed_policy="increment")
    assert "stop_reason" not in out and out["plan"].layout == LAYOUT


def test_unreadable_answer(tmp_path, prompt):
    _, out = run(tmp_path, prompt, ["?", "?", "?"])
    assert out["stop_reason"] == "align_failed" and out["failures"][0].step == "align"
    _, out = run(tmp_path / "b", prompt, ["?", "?", "?"], seed_policy="increment")
    assert "stop_reason" not in out and out["plan"].layout == LAYOUT


def test_pixel_answers_use_the_image_size(tmp_path, prompt):
    _, out = run(tmp_path, prompt, ["Updated objects:\n- a cat [16, 12, 48, 36]"])
    assert out["plan"].layout.objects[0].box.as_list() == [0.25, 0.25, 0.75, 0.75]
