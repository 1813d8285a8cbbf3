from mllm_guidance.config import make_config
from mllm_guidance.layout import Layout
from tests.nodes.helpers import SelfCorrectNode
from mllm_guidance.state import GuidanceState, Plan
from tests.conftest import make_context, make_runtime
from tests.fakes import CORRECTED, PLACE
from mllm_guidance.prompts import parse_layout

PLACED = parse_layout(PLACE)


def run(tmp_path, prompt, replies, **cfg):
    ctx = make_context(tmp_path, {"self_correct": replies})
    state = GuidanceState(prompt=prompt, plan=Plan(layout=PLACED, source="place"), correct_rounds=cfg.pop("done", 0))
    return ctx, SelfCorrectNode(make_config(**cfg))(state, make_runtime(ctx))


def test_sends_the_current_objects(tmp_path, prompt):
    ctx, out = run(tmp_path, prompt, [CORRECTED])
    text = ctx.mllm.calls[0][1][1].content[0]["text"]
    assert "Current objects:\n- a man sitting [0.1, 0.45, 0.45, 0.95]" in text
    assert out["plan"].source == "self_correct" and out["correct_rounds"] == 1 and not out["correct_done"]
    [c] = out["corrections"]
    assert c.changed and "moved" in c.diff and c.reasoning.startswith("the man must sit")


def test_unchanged_within_tolerance_stops(tmp_path, prompt):
    same = "Reasoning: fine.\nUpdated objects:\n" + Layout.from_pairs(
        [(o.name, [o.box.x1 + 0.004, o.box.y1, o.box.x2, o.box.y2]) for o in PLACED]).to_lines()
    ctx, out = run(tmp_path, prompt, [same])
    assert out["correct_done"] and not out["corrections"][0].changed and "plan" not in out


def test_limit_stops(tmp_path, prompt):
    _, out = run(tmp_path, prompt, [CORRECTED], max_correct_rounds=2, done=1)
    assert out["correct_done"] and out["correct_rounds"] == 2


def test_unreadable_keeps_the_layout_and_stops(tmp_path, prompt):
    _, out = run(tmp_path, prompt, ["no", "no", "no"])
    assert out["correct_done"] and "plan" not in out
    assert out["corrections"][0].after is None and out["failures"][0].step == "self_correct"
