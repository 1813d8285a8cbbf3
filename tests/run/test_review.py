"""Human-in-the-loop review (issue 14, item 1): approve, edit or stop the layout before it is
rendered, inline (a callable), paused and resumed (``review="interrupt"``), and the LangGraph way
(``interrupt`` + ``Command(resume=...)``) on a compiled graph."""

from __future__ import annotations

import json

import pytest

from mllm_guidance import PendingReview, ReviewDecision, guide, resume
from mllm_guidance.errors import ConfigError, InputError
from mllm_guidance.layout import Layout
from tests.fakes import ALIGNED, PLACE, CountingGenerator, RecordingChatModel, score

PROMPT = "A man is sitting under a tree while a bird is in the tree."
MINE = Layout.from_pairs([("a man sitting on a bench", [0.05, 0.5, 0.4, 0.95]), ("a tree", [0.4, 0.02, 0.98, 0.95]),
                          ("a bird on a branch", [0.6, 0.2, 0.72, 0.32])])


def model(reasons=(5,)):
    return RecordingChatModel(replies={"place": [PLACE], "self_correct": [PLACE], "reason": [score(s) for s in reasons],
                                       "align": [ALIGNED]})


def test_an_edit_reaches_the_generator_exactly_and_is_recorded(tmp_path):
    seen = []

    def reviewer(request):
        seen.append(request)
        return ReviewDecision.edit(MINE)

    gen = CountingGenerator()
    result = guide(PROMPT, mllm=model(), generator=gen, run_dir=tmp_path / "r", review=reviewer)
    assert len(seen) == 1 and seen[0].stage == "plan" and seen[0].round == 0
    assert seen[0].layout.names == ["a man sitting", "a tree", "a bird"]
    assert (tmp_path / "r" / "review-0.png").exists() and seen[0].preview_path.endswith("review-0.png")
    assert gen.requests[0].layout == MINE and result.rounds[0].layout == MINE
    assert result.rounds[0].layout_source == "human"
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    [review] = run["reviews"]
    assert review["action"] == "edit" and review["stage"] == "plan" and Layout.model_validate(review["layout"]) == MINE
    assert "a bird on a branch" in review["change"]


def test_approve_renders_the_mllms_layout(tmp_path):
    gen = CountingGenerator()
    result = guide(PROMPT, mllm=model(), generator=gen, run_dir=tmp_path / "r", review=lambda r: ReviewDecision.approve())
    assert gen.requests[0].layout.names == ["a man sitting", "a tree", "a bird"] and result.score == 5


def test_interrupt_pauses_and_resume_continues_with_the_decision(tmp_path):
    gen = CountingGenerator()
    pending = guide(PROMPT, mllm=model(), generator=gen, run_dir=tmp_path / "r", review="interrupt")
    assert isinstance(pending, PendingReview) and pending.request.stage == "plan" and gen.requests == []
    assert pending.request.layout.names == ["a man sitting", "a tree", "a bird"]
    # an edit that cannot be used loses nothing: refused, still paused at the same review
    with pytest.raises(InputError, match="cannot be read"):
        resume(tmp_path / "r", mllm=model(), generator=gen, decision={"action": "edit", "layout": "a bench somewhere"})
    again = resume(tmp_path / "r", mllm=model(), generator=gen)
    assert isinstance(again, PendingReview) and again.request == pending.request
    edited = "\n".join(f"- {o.name} {o.box.as_list()}" for o in MINE.objects)  # the text form a person edits
    result = resume(tmp_path / "r", mllm=model(), generator=gen, decision={"action": "edit", "layout": edited})
    assert gen.requests[0].layout == MINE and result.score == 5 and len(gen.requests) == 1


def test_stop_at_the_plan_renders_once_and_ends(tmp_path):
    gen, planner = CountingGenerator(), model()
    result = guide(PROMPT, mllm=planner, generator=gen, run_dir=tmp_path / "r", review=lambda r: "stop")
    assert len(gen.requests) == 1 and result.stop_reason == "review_stopped" and result.score is None
    assert "reason" not in planner.steps()


def test_plan_and_align_reviews_and_a_stop_keeps_the_best_so_far(tmp_path):
    stages = []

    def reviewer(request):
        stages.append((request.stage, request.round))
        return "approve" if request.stage == "plan" else "stop"

    gen = CountingGenerator()
    result = guide(PROMPT, mllm=model(reasons=(3,)), generator=gen, run_dir=tmp_path / "r", review=reviewer,
                   config={"review": "plan+align"})
    assert stages == [("plan", 0), ("align", 1)]
    assert len(gen.requests) == 1 and result.stop_reason == "review_stopped" and result.best_round == 0


def test_review_needs_the_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="needs its checkpoint"):
        guide(PROMPT, mllm=model(), generator=CountingGenerator(), run_dir=tmp_path / "r", checkpoint=False,
              review=lambda r: "approve")


def test_the_langgraph_way_on_a_compiled_graph(tmp_path):
    """interrupt() surfaces as __interrupt__; Command(resume=...) continues, as in Studio."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from mllm_guidance import build_graph
    from tests.conftest import make_context

    ctx = make_context(tmp_path, {"place": [PLACE], "self_correct": [PLACE], "reason": [score(5)]}, config={"review": "plan"})
    graph = build_graph(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t"}}
    paused = graph.invoke({"prompt": PROMPT}, thread, context=ctx)
    [pause] = paused["__interrupt__"]
    assert pause.value["stage"] == "plan" and len(pause.value["layout"]["objects"]) == 3
    done = graph.invoke(Command(resume={"action": "edit", "layout": MINE.model_dump()}), thread, context=ctx)
    assert done["stop_reason"] == "good" and done["rounds"][0].layout == MINE


def test_cli_review_accepts_edits_in_the_editor_and_re_asks_after_a_bad_edit(tmp_path, capsys, monkeypatch):
    """generate --review with a scripted $EDITOR and answers on stdin: a first edit that does not
    parse is shown and asked again; the second edit is what the generator draws."""
    import io
    import sys

    from mllm_guidance.cli import main
    from tests.cli.test_cli import RECORDING

    editor = tmp_path / "editor.py"
    editor.write_text(
        "import pathlib, sys\n"
        "p = pathlib.Path(sys.argv[1]); n = pathlib.Path(sys.argv[0]).with_suffix('.count')\n"
        "k = int(n.read_text()) if n.exists() else 0; n.write_text(str(k + 1))\n"
        "p.write_text('a bench somewhere' if k == 0 else '- a man on a bench [0.05, 0.5, 0.4, 0.95]\\n- a tree [0.4, 0.02, 0.98, 0.95]\\n')\n")
    monkeypatch.setenv("EDITOR", f"{sys.executable} {editor}")
    monkeypatch.setattr(sys, "stdin", io.StringIO("x\ne\ne\n"))
    out = tmp_path / "run"
    code = main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--generator", "sketch", "--review",
                 "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "review before the first image" in err and "[a]ccept, [e]dit" in err and "error: the edited layout cannot be read" in err
    run = json.loads((out / "run.json").read_text())
    assert run["reviews"][0]["action"] == "edit"
    assert [o["name"] for o in run["rounds"][0]["layout"]["objects"]] == ["a man on a bench", "a tree"]


def test_a_bad_resume_value_is_refused_unsaved_on_a_compiled_graph(tmp_path):
    """Issue 20, item 2: the review interrupt validates its answer (its response schema) before
    LangGraph saves it, so after a refused decision the next valid one continues."""
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command

    from mllm_guidance import build_graph
    from tests.conftest import make_context

    ctx = make_context(tmp_path, {"place": [PLACE], "self_correct": [PLACE], "reason": [score(5)]}, config={"review": "plan"})
    graph = build_graph(checkpointer=InMemorySaver())
    thread = {"configurable": {"thread_id": "t"}}
    [pause] = graph.invoke({"prompt": PROMPT}, thread, context=ctx)["__interrupt__"]
    assert pause.response_schema["properties"]["action"]["enum"] == ["approve", "edit", "stop"]
    for bad, why in (({"action": "edit", "layout": {"objects": []}}, "no objects"), ({"action": "edit"}, "needs the layout"),
                     ("x" * 5_000_000, "approve, stop"), ({"action": "edit", "layout": "x" * 5_000_000}, "characters")):
        with pytest.raises(Exception, match=why) as refused:
            graph.invoke(Command(resume=bad), thread, context=ctx)
        assert len(str(refused.value)) < 1000
        assert graph.get_state(thread).next == ("review",)
    done = graph.invoke(Command(resume="approve"), thread, context=ctx)
    assert done["stop_reason"] == "good" and done["rounds"][0].layout.names == ["a man sitting", "a tree", "a bird"]
