"""The MLLM Guidance state graph (thesis Table 6.1 and its ablations), built from a config.

::

    START -> place -> self_correct* -> generate -> reason -> (good or K aligns) -> finish
                                          ^                       |
                                          +------- align <--------+

``plain`` starts at generate; ``place`` and ``place+correct`` finish after the first render;
``align`` loops generate -> align without reasoning. Nodes record their decisions in the state
(``correct_done``, ``stop_reason``); the routes below only read them, so the graph stays a plain
picture of the algorithm.

Call budget (mode ``full``, K = max_align_rounds, C = max_correct_rounds, never good): at most
K + 1 generator calls and 1 + C + (K + 1) + K MLLM calls, each multiplied by at most
1 + parse_retries for unreadable answers. With the defaults (K = C = 5): 6 generator calls and
1 + 5 + 6 + 5 = 17 MLLM calls. The table's last align and render, whose image would never be
judged, are not spent.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from mllm_guidance.config import Context, GuidanceConfig, make_config
from mllm_guidance.nodes import AlignNode, FinishNode, GenerateNode, PlaceNode, ReasonNode, SelfCorrectNode
from mllm_guidance.state import GuidanceState


def build_graph(config: GuidanceConfig | dict[str, Any] | None = None, *, checkpointer: Any = None,
                context_schema: type = Context) -> Any:
    """Compile the graph for ``config``; run it with ``context=Context(...)`` (or, for a
    ``context_schema`` of string settings such as the LangGraph server's, with those)."""
    cfg = make_config(config)
    graph = StateGraph(GuidanceState, context_schema=context_schema)
    graph.add_node("place", PlaceNode(cfg))
    graph.add_node("self_correct", SelfCorrectNode(cfg))
    graph.add_node("generate", GenerateNode(cfg))
    graph.add_node("reason", ReasonNode(cfg))
    graph.add_node("align", AlignNode(cfg))
    graph.add_node("finish", FinishNode(cfg))

    def start(state: GuidanceState) -> str:
        return "place" if cfg.uses_layout else "generate"

    def after_layout(state: GuidanceState) -> str:
        return "generate" if state.correct_done else "self_correct"

    def after_generate(state: GuidanceState) -> str:
        if state.stop_reason:
            return "finish"
        return "reason" if cfg.reasons else "align"

    def after_judgement(state: GuidanceState) -> str:
        return "finish" if state.stop_reason else "align"

    def after_align(state: GuidanceState) -> str:
        return "finish" if state.stop_reason else "generate"

    graph.add_conditional_edges(START, start, ["place", "generate"])
    graph.add_conditional_edges("place", after_layout, ["self_correct", "generate"])
    graph.add_conditional_edges("self_correct", after_layout, ["self_correct", "generate"])
    graph.add_conditional_edges("generate", after_generate, ["reason", "align", "finish"])
    graph.add_conditional_edges("reason", after_judgement, ["align", "finish"])
    graph.add_conditional_edges("align", after_align, ["generate", "finish"])
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=checkpointer, name=f"mllm-guidance[{cfg.mode}]")
