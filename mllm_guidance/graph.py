"""The MLLM Guidance state graph (thesis Table 6.1 and its ablations): one graph for every config.

::

    START -> begin -> place -> self_correct* -> generate -> reason -> (good or K aligns) -> finish
                                                   ^                       |
                                                   +------- align <--------+

With ``judge_mode="pairwise"`` the ``compare`` node is taken after reason: when the new image ties
the best so far, the MLLM picks one of the two (at most K more MLLM calls). ``plain`` goes from
begin to generate; ``place`` and ``place+correct`` finish after the first render; ``align`` loops
generate -> align without reasoning. Nodes record their decisions in the state (``correct_done``,
``stop_reason``); the routes below only read them and the run's config (``Context.config``, at run
time), so the graph stays a plain picture of the algorithm and is compiled once per process.

Call budget (mode ``full``, K = max_align_rounds, C = max_correct_rounds (K when unset), never good): at most
K + 1 generator calls and 1 + C + (K + 1) + K MLLM calls, each multiplied by at most
1 + parse_retries for unreadable answers. With the defaults (K = C = 5): 6 generator calls and
1 + 5 + 6 + 5 = 17 MLLM calls. The table's last align and render, whose image would never be
judged, are not spent.

The nodes are async; the compiled graph runs with ``ainvoke`` / ``astream`` and, for synchronous
callers, with ``invoke`` / ``stream`` too (each node's coroutine then runs on the package's
background loop, see ``background.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime, get_runtime

from mllm_guidance.background import run_sync
from mllm_guidance.config import GuidanceConfig
from mllm_guidance.context import Context, context_of
from mllm_guidance.nodes import AlignNode, CompareNode, FinishNode, GenerateNode, PlaceNode, ReasonNode, SelfCorrectNode, begin
from mllm_guidance.nodes.compare import needs_comparison
from mllm_guidance.nodes.review import review
from mllm_guidance.state import GuidanceState


def build_graph(*, checkpointer: Any = None, input_schema: type | None = None,
                output_schema: type | None = None) -> Any:
    """Compile the graph; run it with ``context=Context(...)`` (``run.py`` builds one, its
    ``config`` holding the run's knobs). Every mode, K and is_good runs on the same compiled graph:
    the routes read the config from the runtime. ``input_schema`` / ``output_schema`` narrow what
    callers send and get (default: the state). ``compiled_graph`` caches the default one."""
    graph = StateGraph(GuidanceState, context_schema=Context, input_schema=input_schema,
                       output_schema=output_schema)
    graph.add_node("begin", _node("begin", begin))
    graph.add_node("place", _node("place", PlaceNode()))
    graph.add_node("self_correct", _node("self_correct", SelfCorrectNode()))
    graph.add_node("generate", _node("generate", GenerateNode()))
    graph.add_node("reason", _node("reason", ReasonNode()))
    graph.add_node("compare", _node("compare", CompareNode()))
    graph.add_node("align", _node("align", AlignNode()))
    graph.add_node("finish", _node("finish", FinishNode()))
    graph.add_node("review", _node("review", review))
    graph.add_edge(START, "begin")
    graph.add_conditional_edges("begin", after_begin, ["place", "generate"])
    graph.add_conditional_edges("place", after_layout, ["self_correct", "generate", "review"])
    graph.add_conditional_edges("self_correct", after_layout, ["self_correct", "generate", "review"])
    graph.add_conditional_edges("review", after_review, ["generate", "finish"])
    graph.add_conditional_edges("generate", after_generate, ["reason", "align", "finish"])
    graph.add_conditional_edges("reason", after_reason, ["compare", "align", "finish"])
    graph.add_conditional_edges("compare", after_judgement, ["align", "finish"])
    graph.add_conditional_edges("align", after_align, ["generate", "finish", "review"])
    graph.add_edge("finish", END)
    return graph.compile(checkpointer=checkpointer, name="mllm-guidance")


@functools.lru_cache(maxsize=1)
def compiled_graph() -> Any:
    """The graph compiled once per process; ``with_checkpointer`` gives a run its own saver."""
    return build_graph()


def with_checkpointer(graph: Any, checkpointer: Any) -> Any:
    """The compiled ``graph`` over another checkpointer, without compiling it again."""
    return graph if checkpointer is None else graph.copy(update={"checkpointer": checkpointer})


# -- routes: they read the run's config at run time ---------------------------------------------


def _config() -> GuidanceConfig:
    return context_of(get_runtime()).config


def after_begin(state: GuidanceState) -> str:
    return "place" if _config().uses_layout else "generate"


def after_layout(state: GuidanceState) -> str:
    if not state.correct_done:
        return "self_correct"
    return "review" if _config().review != "off" else "generate"


def after_generate(state: GuidanceState) -> str:
    if state.stop_reason:
        return "finish"
    return "reason" if _config().reasons else "align"


def after_judgement(state: GuidanceState) -> str:
    return "finish" if state.stop_reason else "align"


def after_reason(state: GuidanceState) -> str:
    pairwise = _config().judge_mode == "pairwise"
    return "compare" if pairwise and needs_comparison(state) else after_judgement(state)


def after_align(state: GuidanceState) -> str:
    if state.stop_reason:
        return "finish"
    return "review" if _config().review == "plan+align" else "generate"


def after_review(state: GuidanceState) -> str:
    # a stop at the plan review still renders the plan once (generate then finishes)
    return "finish" if state.stop_reason and state.rounds else "generate"


def _checked_runtime() -> Runtime[Context]:
    """The node's runtime, whose context must be a built Context (one clear error otherwise)."""
    runtime = get_runtime()
    context_of(runtime)
    return runtime


def _node(name: str, step: Callable[[GuidanceState, Any], Awaitable[dict[str, Any]]]) -> RunnableLambda:
    """An async node that synchronous graph runs can call as well."""

    async def run_async(state: GuidanceState) -> dict[str, Any]:
        return await step(state, _checked_runtime())

    def run_blocking(state: GuidanceState) -> dict[str, Any]:
        return run_sync(step(state, _checked_runtime()))

    return RunnableLambda(run_blocking, afunc=run_async, name=name)
