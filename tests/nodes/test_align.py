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


def judged(ctx, prompt, score=3, why="the bird is not in the tree"):
    state = state_with_round(ctx, prompt)
    last = state.rounds[-1].model_copy(update={"score": score, "reasoning": why, "good": score == 5})
    return state.model_copy(update={"rounds": [last]})


def test_align_sees_the_judgement_and_the_layout_by_default(tmp_path, prompt):
    ctx = make_context(tmp_path, {"align": [ALIGNED]})
    AlignNode(make_config())(judged(ctx, prompt), make_runtime(ctx))
    request = ctx.mllm.calls[0][1][1].content[0]["text"]
    assert "scored it 3 out of 5: the bird is not in the tree" in request
    assert "generated from this layout:\n- a man sitting [0.1, 0.45, 0.45, 0.95]" in request


def test_align_context_image_is_table_6_1_as_written(tmp_path, prompt):
    ctx = make_context(tmp_path, {"align": [ALIGNED]})
    AlignNode(make_config(align_context="image"))(judged(ctx, prompt), make_runtime(ctx))
    request = ctx.mllm.calls[0][1][1].content[0]["text"]
    assert "scored it" not in request and "layout:" not in request
    assert request == f"User prompt: {prompt}\nThe current image generated for this prompt is attached."


def test_an_empty_answer_against_a_bad_score_is_asked_again(tmp_path, prompt):
    empty = "Reasoning: it matches.\nUpdated objects:\n"
    ctx = make_context(tmp_path, {"align": [empty, ALIGNED]})
    out = AlignNode(make_config())(judged(ctx, prompt), make_runtime(ctx))
    follow_up = ctx.mllm.calls[1][1]
    assert follow_up[-2].content.startswith("Reasoning: it matches.")
    assert "empty" in follow_up[-1].content and "scored it 3 out of 5" in follow_up[-1].content
    assert out["plan"].source == "align" and "stop_reason" not in out
    assert len(out["call_ids"]) == 2

    ctx = make_context(tmp_path / "b", {"align": [empty, empty]})
    out = AlignNode(make_config())(judged(ctx, prompt), make_runtime(ctx))
    assert out["stop_reason"] == "align_empty" and len(ctx.mllm.calls) == 2  # said, not silent

    ctx = make_context(tmp_path / "c", {"align": [empty]})
    out = AlignNode(make_config(align_empty="stop"))(judged(ctx, prompt), make_runtime(ctx))
    assert out["stop_reason"] == "align_empty" and len(ctx.mllm.calls) == 1


def test_the_empty_answer_example_is_shown_in_align_mode_only(tmp_path, prompt):
    for mode, shown in (("align", True), ("full", False)):
        ctx = make_context(tmp_path / mode, {"align": [ALIGNED]})
        AlignNode(make_config(mode=mode))(state_with_round(ctx, prompt), make_runtime(ctx))
        assert ("A cat is sleeping on a sofa." in ctx.mllm.calls[0][1][0].content) is shown
