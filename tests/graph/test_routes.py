"""Every route of the graph, run through guide() with a recording chat model."""

import asyncio
import json

import pytest

from mllm_guidance import aguide, build_graph, guide
from tests.conftest import PROMPT
from tests.fakes import ALIGNED, CORRECTED, PLACE, CountingGenerator, RecordingChatModel, score

ALIGN_VARIANTS = [ALIGNED.replace("0.55, 0.2", f"0.{50 + i}, 0.2") for i in range(6)]


def run(tmp_path, replies, generator=None, settings=None, **cfg):
    model = RecordingChatModel(replies=replies)
    gen = generator or CountingGenerator()
    result = guide(PROMPT, mllm=model, generator=gen, config=cfg, run_dir=tmp_path / "run", settings=settings)
    return result, model, gen


def test_good_at_round_zero(tmp_path):
    result, model, gen = run(tmp_path, {"place": [PLACE], "self_correct": [PLACE], "reason": [score(5)]})
    assert model.steps() == ["place", "self_correct", "reason"]
    assert (result.best_round, result.score, result.stop_reason) == (0, 5, "good")
    assert len(gen.requests) == 1 and result.usage.generator_calls == 1


def test_never_good_spends_the_documented_budget_and_keeps_the_best(tmp_path):
    corrections = [CORRECTED.replace("0.3, 0.55", f"0.{30 + i}, 0.55") for i in range(5)]
    replies = {"place": [PLACE], "self_correct": corrections,
               "reason": [score(s) for s in [2, 4, 3, 4, 1, 3]], "align": ALIGN_VARIANTS[:5]}
    result, model, gen = run(tmp_path, replies)
    # K = 5, never good: 6 renders and 1 + 5 + 6 + 5 MLLM calls, no unused align or render
    assert len(gen.requests) == 6 and result.usage.generator_calls == 6
    assert model.steps().count("self_correct") == 5 and model.steps().count("reason") == 6
    assert model.steps().count("align") == 5 and result.usage.mllm_calls == 17 == len(model.calls)
    assert result.stop_reason == "max_rounds"
    assert result.best_round == 1 and result.score == 4  # the earlier of the two 4s
    assert [r.score for r in result.rounds] == [2, 4, 3, 4, 1, 3]
    assert result.image.sha256 == result.rounds[1].image.sha256


def test_corrections_stop_when_unchanged(tmp_path):
    replies = {"place": [PLACE], "self_correct": [CORRECTED, CORRECTED], "reason": [score(5)]}
    result, model, _ = run(tmp_path, replies)
    assert model.steps().count("self_correct") == 2
    assert [c.changed for c in result.corrections] == [True, False]
    assert result.rounds[0].layout_source == "self_correct"


def test_correction_limit(tmp_path):
    corrections = [CORRECTED.replace("0.3, 0.55", f"0.{30 + i}, 0.55") for i in range(3)]
    result, model, _ = run(tmp_path, {"place": [PLACE], "self_correct": corrections, "reason": [score(5)]}, max_correct_rounds=2)
    assert model.steps().count("self_correct") == 2 and len(result.corrections) == 2


def test_align_mode_stops_on_an_empty_layout(tmp_path):
    replies = {"place": [PLACE], "self_correct": [PLACE], "align": [ALIGNED, "Reasoning: matches.\nUpdated objects: []"]}
    result, model, gen = run(tmp_path, replies, mode="align")
    assert model.steps() == ["place", "self_correct", "align", "align"]
    assert len(gen.requests) == 2 and result.stop_reason == "aligned"
    assert result.best_round == 1 and result.score is None  # the last image; nothing judged


def test_align_mode_round_limit(tmp_path):
    replies = {"place": [PLACE], "align": ALIGN_VARIANTS[:2]}
    result, model, gen = run(tmp_path, replies, mode="align", max_align_rounds=2, self_correct=False)
    assert model.steps() == ["place", "align", "align"] and len(gen.requests) == 3
    assert result.stop_reason == "max_rounds" and result.best_round == 2


@pytest.mark.parametrize("mode,steps,renders", [
    ("plain", [], 1), ("place", ["place"], 1), ("place+correct", ["place", "self_correct"], 1),
])
def test_ablation_modes(tmp_path, mode, steps, renders):
    replies = {"place": [PLACE], "self_correct": [PLACE]}
    result, model, gen = run(tmp_path, replies, mode=mode)
    assert model.steps() == steps and len(gen.requests) == renders
    assert result.stop_reason == "rendered" and result.score is None
    assert (gen.requests[0].layout is None) == (mode == "plain")


def test_plain_mode_needs_no_mllm(tmp_path):
    result = guide(PROMPT, mllm=None, generator=CountingGenerator(), config={"mode": "plain"}, run_dir=tmp_path / "r")
    assert result.usage.mllm_calls == 0 and result.image_path.exists()


def test_parse_failures_are_retried_then_the_run_goes_on(tmp_path):
    replies = {
        "place": ["Sorry, I can't.", PLACE],
        "self_correct": ["garbage", "more garbage", "still garbage"],
        "reason": ["Score: 7", "Score: excellent", "no", score(5)],
        "align": [ALIGNED],
    }
    result, model, gen = run(tmp_path, replies)
    assert model.steps()[:2] == ["place", "place"]
    assert [f.step for f in result.failures] == ["self_correct", "reason"]
    assert result.rounds[0].score is None and result.rounds[0].layout.names == ["a man sitting", "a tree", "a bird"]
    assert result.rounds[1].score == 5 and result.best_round == 1 and result.stop_reason == "good"
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert len(run_json["failures"]) == 2
    assert sum(1 for c in run_json["calls"] if c["error"]) == 1 + 3 + 3


def test_structured_mode_end_to_end(tmp_path):
    layout = {"reasoning": "under the tree", "objects": [{"name": "a man", "box": [0.3, 0.55, 0.6, 0.95]}, {"name": "a tree", "box": [0.2, 0.05, 0.9, 0.9]}]}
    replies = {"place": [dict(layout)], "self_correct": [dict(layout)], "reason": [{"__tool__": "ScoreAnswer", "reasoning": "fine", "score": 5}]}
    result, model, _ = run(tmp_path, replies, settings={"structured_steps": True})
    assert result.score == 5 and result.rounds[0].reasoning == "fine"
    assert model.steps() == ["place", "self_correct", "reason"]


def test_same_seed_every_round_by_default(tmp_path):
    replies = {"place": [PLACE], "self_correct": [PLACE], "reason": [score(3), score(5)], "align": [ALIGNED]}
    _, _, gen = run(tmp_path, replies, seed=11)
    assert [r.seed for r in gen.requests] == [11, 11]


def test_aguide(tmp_path):
    replies = {"place": [PLACE], "self_correct": [PLACE], "reason": [score(2), score(5)], "align": [ALIGNED]}
    model = RecordingChatModel(replies=replies)
    events = []
    result = asyncio.run(aguide(PROMPT, mllm=model, generator=CountingGenerator(), run_dir=tmp_path / "run", on_event=events.append))
    assert result.score == 5 and result.best_round == 1
    assert [e["score"] for e in events if e.get("step") == "reason" and e["event"] == "step"] == [2, 5]


def test_build_graph_streams_progress_events(tmp_path):
    from tests.conftest import make_context

    ctx = make_context(tmp_path, {"place": [PLACE], "reason": [score(4), score(5)], "align": [ALIGNED]},
                       config={"self_correct": False})
    graph = build_graph()
    custom = [c for mode, c in graph.stream({"prompt": PROMPT}, context=ctx, stream_mode=["updates", "custom"]) if mode == "custom"]
    steps = [(e["step"], e.get("round"), e.get("score")) for e in custom if e["event"] == "step"]
    assert steps == [("place", 0, None), ("generate", 0, None), ("reason", 0, 4), ("align", 0, None), ("generate", 1, None), ("reason", 1, 5)]
    assert custom[-1]["event"] == "done"


def test_checkpoints_store_each_round_once(tmp_path):
    """A checkpoint stores what its step added, not the whole history again: the largest stored
    checkpoint of a 12-round run is no larger than that of a 3-round run (bytes, not time)."""
    import sqlite3

    def largest_checkpoint(k):
        variants = [ALIGNED.replace("0.55, 0.2", f"{0.20 + 0.04 * i:.2f}, 0.2") for i in range(k)]
        replies = {"place": [PLACE], "self_correct": [PLACE], "reason": [score(2)] * (k + 1), "align": variants}
        model = RecordingChatModel(replies=replies)
        result = guide(PROMPT, mllm=model, generator=CountingGenerator(), config={"max_align_rounds": k},
                       run_dir=tmp_path / f"k{k}")
        assert len(result.rounds) == k + 1
        with sqlite3.connect(tmp_path / f"k{k}" / "checkpoints.sqlite") as conn:
            return conn.execute("SELECT max(length(checkpoint)) FROM checkpoints").fetchone()[0]

    assert largest_checkpoint(12) <= largest_checkpoint(3) * 1.2


def test_a_second_prompt_on_the_same_thread_is_a_new_run(tmp_path):
    """Issue 15, item 2, in process: the thread keeps its checkpoint history, but a new input starts
    a new run (begin resets what belongs to a run) instead of jumping to finish."""
    from langgraph.checkpoint.memory import InMemorySaver

    from tests.conftest import make_context

    ctx = make_context(tmp_path, {"place": [PLACE, PLACE], "reason": [score(2), score(5), score(5)], "align": [ALIGNED]},
                       config={"self_correct": False})
    graph = build_graph(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t1"}}
    first = graph.invoke({"prompt": PROMPT, "seed": 1}, thread, context=ctx)
    second = graph.invoke({"prompt": "A red ball on a table.", "seed": 2}, thread, context=ctx)
    assert len(first["rounds"]) == 2 and first["stop_reason"] == "good"
    assert second["prompt"] == "A red ball on a table." and second["stop_reason"] == "good"
    assert len(second["rounds"]) == 1 and second["rounds"][0].seed == 2 and second["best"] == 0
    assert len(second["call_ids"]) == 2 and second["corrections"] == [] and second["failures"] == []
    assert len(list(graph.get_state_history(thread))) > 8  # the thread remembers both runs' checkpoints


def test_one_compiled_graph_serves_concurrent_runs_with_different_knobs(tmp_path):
    """Issue 26, item 4: the graph is compiled once per process; each run's mode, K and is_good
    come from its own context, so two runs at once on the same graph each follow their own."""
    from mllm_guidance.graph import compiled_graph

    def model():
        return RecordingChatModel(replies={"place": [PLACE], "self_correct": [PLACE], "reason": [score(3)] * 4,
                                           "align": [ALIGNED.replace("0.55, 0.2", f"{0.2 + 0.1 * i:.2f}, 0.2") for i in range(3)]})

    async def both():
        return await asyncio.gather(
            aguide(PROMPT, mllm=model(), generator=CountingGenerator(), config={"max_align_rounds": 2},
                   run_dir=tmp_path / "k2"),
            aguide(PROMPT, mllm=model(), generator=CountingGenerator(), config={"max_align_rounds": 0, "is_good": 3},
                   run_dir=tmp_path / "good3"),
            aguide(PROMPT, mllm=model(), generator=CountingGenerator(), config={"mode": "place"},
                   run_dir=tmp_path / "place"))

    before = compiled_graph()
    k2, good3, place = asyncio.run(both())
    assert (len(k2.rounds), k2.stop_reason) == (3, "max_rounds")
    assert (len(good3.rounds), good3.stop_reason) == (1, "good")
    assert len(place.rounds) == 1 and place.score is None
    assert compiled_graph() is before
