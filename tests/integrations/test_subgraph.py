"""The compiled guidance graph as a node of a user's parent graph."""

from typing import TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from mllm_guidance import Context, GuidanceState, build_graph
from tests.conftest import PROMPT, make_context
from tests.fakes import PLACE, score


class Pipeline(GuidanceState):
    """A parent state that extends the guidance state: the subgraph shares its keys."""

    caption: str = ""


def write_caption(state: Pipeline) -> dict:
    best = state.rounds[state.best]
    return {"caption": f"{state.prompt} (score {best.score}, {len(best.layout)} objects)"}


def test_added_directly_when_the_parent_shares_the_state(tmp_path):
    ctx = make_context(tmp_path, {"place": [PLACE], "self_correct": [PLACE], "reason": [score(5)]},
                       config={"max_align_rounds": 2})
    parent = StateGraph(Pipeline, context_schema=Context)
    parent.add_node("guidance", build_graph())
    parent.add_node("caption", write_caption)
    parent.add_edge(START, "guidance")
    parent.add_edge("guidance", "caption")
    parent.add_edge("caption", END)
    out = parent.compile().invoke({"prompt": PROMPT, "seed": 1}, context=ctx)
    assert out["caption"].endswith("(score 5, 3 objects)") and out["final_image"].path == "final.png"


class Chat(TypedDict):
    request: str
    image_path: str


def test_called_from_a_node_that_maps_state(tmp_path):
    ctx = make_context(tmp_path, {"place": [PLACE], "self_correct": [PLACE], "reason": [score(4), score(5)],
                                  "align": ["Updated objects:\n- a man [0.3, 0.5, 0.6, 0.95]\n- a tree [0.2, 0.05, 0.9, 0.9]"]})
    guidance = build_graph()

    def draw(state: Chat, runtime: Runtime[Context]) -> dict:
        result = guidance.invoke({"prompt": state["request"]}, context=runtime.context)
        return {"image_path": str(runtime.context.store.path(result["final_image"].path))}

    parent = StateGraph(Chat, context_schema=Context)
    parent.add_node("draw", draw)
    parent.add_edge(START, "draw")
    out = parent.compile().invoke({"request": PROMPT}, context=ctx)
    assert out["image_path"].endswith("final.png") and ctx.mllm.steps().count("reason") == 2
