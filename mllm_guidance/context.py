"""What a run runs on and under: the backends, the run directory, the prompts and the method's
knobs, injected into every node through LangGraph's ``Runtime[Context]`` (never through module
globals). The config travels here, not in the graph, so one compiled graph serves every K, is_good
and mode (the routes read it at run time).

``run.py`` builds a Context from a run spec, for every face (the LangGraph server included); tests
and users composing the graph may build one by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mllm_guidance.config import GuidanceConfig
from mllm_guidance.errors import ConfigError
from mllm_guidance.run_settings import RunSettings

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from mllm_guidance.backends.generator import Generator
    from mllm_guidance.prompts.templates import TemplateSet
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
    config: GuidanceConfig = field(default_factory=GuidanceConfig)
    """The method's knobs for this run (mode, K, is_good, ...)."""
    settings: RunSettings = field(default_factory=RunSettings)
    """How the run asks the MLLM and reports (image size and format, structured answers, prices)."""
    verifier: Any = None
    """Ranks a render's candidates (``backends.verifier.Verifier``); unset: the config's built-in
    ``verifier`` by name, loaded once per process."""


def context_of(runtime: Any) -> Context:
    """The run's Context, checked once per node call (``graph._node``). Setup happens before the
    graph, in the run layer (``run.py``): a node never builds backends, stores or templates."""
    ctx = getattr(runtime, "context", None)
    if isinstance(ctx, Context):
        return ctx
    raise ConfigError("run the graph with context=Context(mllm=..., generator=..., store=..., templates=..., config=...), "
                      "as run.py builds it (Run.create / Run.reopen)")
