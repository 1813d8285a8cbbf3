"""What a run runs on: the backends, the run directory and the prompts, injected into every node
through LangGraph's ``Runtime[Context]`` (never through module globals).

``run.py`` builds a Context from a run spec; tests and users composing the graph may build one by
hand. The LangGraph server passes plain settings instead, which ``resolve_context`` turns into a
Context through their ``to_context()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mllm_guidance.errors import ConfigError

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from mllm_guidance.backends.generator import Generator
    from mllm_guidance.prompts.templates import TemplateSet
    from mllm_guidance.state import GuidanceState
    from mllm_guidance.store import RunStore


@dataclass
class Context:
    """The backends of one run."""

    mllm: BaseChatModel | None
    """The planner and judge; None only for ``plain`` runs, which never ask it."""
    generator: Generator
    """The layout-to-image model."""
    store: RunStore
    """The run directory: images, the call log, the run record."""
    templates: TemplateSet
    """The four step prompts of this run."""
    verifier: Any = None
    """Ranks a render's candidates (``backends.verifier.Verifier``); unset: the config's built-in
    ``verifier`` by name, loaded once per process."""
    on_finish: Callable[[GuidanceState], Awaitable[None] | None] | None = None
    """Called by the finish node with the final state, where no run layer writes the evidence
    after the graph (the LangGraph server); the Python API leaves it unset."""


async def context_of(runtime: Any, state: GuidanceState | None = None) -> Context:
    """``resolve_context`` for async nodes: settings that must build backends (files, models) do
    it in a worker thread, so the event loop is never blocked."""
    if isinstance(runtime.context, Context):
        return runtime.context
    import asyncio

    return await asyncio.to_thread(resolve_context, runtime, state)


def resolve_context(runtime: Any, state: GuidanceState | None = None) -> Context:
    """The run's backends. A ``Context`` is used as given; any other context object (the
    LangGraph server's string settings) builds one through its ``to_context(state)``: the state
    tells a run continued after a pause which run directory it already has."""
    ctx = runtime.context
    if isinstance(ctx, Context):
        return ctx
    if hasattr(ctx, "to_context"):
        return ctx.to_context(state)
    raise ConfigError("run the graph with context=Context(mllm=..., generator=..., store=..., templates=...)")
