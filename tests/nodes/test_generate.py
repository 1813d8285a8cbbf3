from mllm_guidance.config import make_config
from mllm_guidance.layout import Layout
from tests.nodes.helpers import GenerateNode
from mllm_guidance.state import GuidanceState, Plan, put_rounds
from tests.conftest import make_context, make_runtime

LAYOUT = Layout.from_pairs([("a cat", [0.1, 0.1, 0.5, 0.5]), ("a cup", [0.45, 0.45, 0.5, 0.5])])


def test_renders_the_plan_and_stores_a_reference(tmp_path, prompt):
    ctx = make_context(tmp_path, {})
    state = GuidanceState(prompt=prompt, seed=42, plan=Plan(layout=LAYOUT, source="place", reasoning="r"))
    out = GenerateNode(make_config(width=96, height=64, steps=3, guidance_scale=5.0, negative_prompt="blurry"))(state, make_runtime(ctx))
    [req] = ctx.generator.requests
    assert (req.prompt, req.layout, req.seed, req.width, req.height, req.steps, req.guidance_scale, req.negative_prompt) == (
        prompt, LAYOUT, 42, 96, 64, 3, 5.0, "blurry")
    [r] = out["rounds"]
    done = ctx.store.finish_image(r.image)  # written in the background: the reading step completes it
    assert r.image.path == "round-0.png" and done.sha256 and (tmp_path / "run" / "round-0.png").exists()
    assert (r.image.width, r.image.height) == (96, 64) and r.layout_reasoning == "r"
    assert any("smaller than 0.1" in w for w in r.layout_warnings)
    assert "usage" not in out and r.cost_usd is None and "stop_reason" not in out  # usage is counted by finish


def test_seed_policy_and_default_size(tmp_path, prompt):
    ctx = make_context(tmp_path, {})
    state = GuidanceState(prompt=prompt, seed=7, plan=Plan(layout=LAYOUT, source="align"))
    out = GenerateNode(make_config(seed_policy="increment"))(state, make_runtime(ctx))
    assert [r.index for r in out["rounds"]] == [0]  # the round it adds, not the whole list
    state = state.model_copy(update={"rounds": put_rounds(state.rounds, [out["rounds"]])})
    out2 = GenerateNode(make_config(seed_policy="increment"))(state, make_runtime(ctx))
    assert [r.seed for r in ctx.generator.requests] == [7, 8]
    assert out2["rounds"][0].image.path == "round-1.png" and ctx.generator.requests[0].width == 512


def test_stops_when_nothing_follows(tmp_path, prompt):
    ctx = make_context(tmp_path, {})
    state = GuidanceState(prompt=prompt, plan=Plan(layout=LAYOUT, source="place"))
    assert GenerateNode(make_config(mode="place"))(state, make_runtime(ctx))["stop_reason"] == "rendered"
    plain = GenerateNode(make_config(mode="plain"))(GuidanceState(prompt=prompt), make_runtime(ctx))
    assert plain["rounds"][0].layout is None and ctx.generator.requests[-1].layout is None
    full_k = GenerateNode(make_config(mode="align", max_align_rounds=1))(state.model_copy(update={"align_rounds": 1}), make_runtime(ctx))
    assert full_k["stop_reason"] == "max_rounds"


def test_generator_errors_are_backend_errors(tmp_path, prompt):
    import pytest

    from mllm_guidance.errors import BackendError
    from tests.fakes import CountingGenerator

    ctx = make_context(tmp_path, {}, generator=CountingGenerator(fail_on=1))
    with pytest.raises(BackendError, match="failed on round 0: RuntimeError"):
        GenerateNode(make_config())(GuidanceState(prompt=prompt, plan=Plan(layout=LAYOUT, source="place")), make_runtime(ctx))
