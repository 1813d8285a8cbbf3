"""The graph for the LangGraph server and Studio: ``langgraph dev`` (see ``langgraph.json``).

The server runs with the operator's credentials and disk, on behalf of clients, so what a client may
set is small and checked (issue: trust boundaries). The operator configures the server by its
environment, read through ``settings.OperatorSettings`` (the table of every ``MLLM_GUIDANCE_*``
variable is there): the backends runs use and those a client may pick instead, the MLLM server URL
(only the operator's), the runs root (default ``runs/server``), the method's defaults
(``MLLM_GUIDANCE_CONFIG``) and how far clients may go (``MLLM_GUIDANCE_CLIENT_*``).

A client sends only ``{"mllm": ..., "generator": ...}`` as the run's context (any other key is
refused), the graph's input is ``{"prompt": ..., "seed": ...}``, and the method's knobs a client
may set per run go in the run's ``configurable``, under the names and bounds every face shares
(``knobs.py``: ``mode``, ``max_rounds``, ``correct_rounds``, ``is_good`` as a 1-5 threshold,
``width``, ``height``, ``review``, ``repair``, ``candidates``, ``verifier``, ``judge_mode``), as
narrowed by the operator; ``client_knobs()`` is their schema. ``langgraph.json`` points at
``make_graph``, which checks those knobs before the run. Base URLs, recordings (``replay:``), model
paths, template directories and output directories are never the client's to choose: a spec the
operator did not list is refused before any call or file access. The graph is compiled WITHOUT a
checkpointer (the server persists threads itself).

The server's graph is a thin face over the run layer, like every other face: its ``start`` node
sets the run up with ``Run.create`` (the same checks as the Python API, before any call; spec.json
first) and carries it out with ``Run.execute`` (the guidance graph, its own checkpoint in the run
directory, the evidence afterwards); a review pause becomes this graph's ``interrupt`` (with
``ReviewDecision`` as its response schema, so a bad decision is refused before it is saved), and
the ``review`` node continues the run with ``Run.reopen`` and ``execute(resume=True)``, as the
Python ``resume`` does. A run directory is bound to the thread that created it (its spec.json
records the thread id): a thread continues its own run and no other.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
import uuid
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableLambda
from langgraph.config import get_config, get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime, get_runtime
from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mllm_guidance.background import run_sync
from mllm_guidance.config import make_config
from mllm_guidance.errors import ConfigError, InputError, first_problem
from mllm_guidance.knobs import KNOBS, knob_model, to_config
from mllm_guidance.review import ReviewDecision, ReviewRequest
from mllm_guidance.run import GuidanceResult, PendingReview, Run
from mllm_guidance.settings import OperatorSettings, operator_settings
from mllm_guidance.spec import RunSpec
from mllm_guidance.state import ImageRef, Round
from mllm_guidance.store import SPEC_FILE

DEFAULT_RUNS_DIR = "runs/server"


def operator() -> OperatorSettings:
    """The operator's settings, read from the environment at each run (settings.py)."""
    return operator_settings()


def choose(kind: str, wanted: str | None) -> str | None:
    """The backend a run uses: the operator's default, or the client's pick when the operator
    listed it; anything else is refused naming what is allowed."""
    ops = operator()
    default = ops.mllm if kind == "mllm" else ops.generator
    if wanted is None or wanted == default:
        return default
    permitted = list(ops.allowed_mllms if kind == "mllm" else ops.allowed_generators)
    if wanted in permitted:
        return wanted
    offer = ", ".join(repr(p) for p in ([default] if default else []) + permitted) or "the server's default only"
    raise ConfigError(f"this server does not let clients choose the {kind} {wanted!r}; choose one of: {offer} "
                      f"(the operator allows more with MLLM_GUIDANCE_ALLOWED_{kind.upper()}S)")


def runs_root() -> Path:
    return Path(operator().runs_dir or DEFAULT_RUNS_DIR).resolve()


def operator_mllm_options() -> dict[str, Any] | None:
    """The MLLM server URL only the operator sets (given again on every continue: a URL holding
    credentials is stored masked)."""
    base_url = operator().mllm_base_url
    return {"base_url": base_url} if base_url else None


class ServerContext(BaseModel):
    """What a client may set per run: the backends, among those the operator allowed."""

    model_config = ConfigDict(extra="forbid")

    mllm: str | None = Field(default=None, description="The MLLM (spec string): the server's, or one of "
                             "MLLM_GUIDANCE_ALLOWED_MLLMS.")
    generator: str | None = Field(default=None, description="The generator (spec string): the server's, or one "
                                  "of MLLM_GUIDANCE_ALLOWED_GENERATORS.")


def settings() -> Any:
    """The operator's GuidanceConfig (MLLM_GUIDANCE_CONFIG, JSON), else the defaults."""
    return make_config(operator().config)


class ServerInput(BaseModel):
    """What a client sends to start a run."""

    prompt: str = Field(description="The text the image must show.")
    seed: int = Field(default=0, ge=0, lt=2**63, description="Base seed of the renders (the knob seed's bounds).")


class ServerOutput(BaseModel):
    """What a finished run returns: the best image's place on the server and every round."""

    prompt: str
    stop_reason: str | None = Field(default=None, description="good, max_rounds, aligned, ...")
    best: int | None = Field(default=None, description="Index of the best round.")
    rounds: list[Round] = Field(default=[], description="Every image with its layout, score and reasoning.")
    final_image: ImageRef | None = Field(default=None, description="The best image, relative to run_dir.")
    run_dir: str | None = Field(default=None, description="The run's directory under the server's runs root.")


class ServerState(ServerOutput):
    """A server thread: the client's input, its run and where the run stands."""

    seed: int = 0
    pending: ReviewRequest | None = Field(default=None, description="The review the run is paused at.")


#: Knobs a server client does not set in ``configurable``: the seed is the graph's input.
NOT_CONFIGURABLE = frozenset({"seed"})
#: Names of earlier versions, refused with their new name rather than silently ignored.
RENAMED = {"max_align_rounds": "max_rounds", "max_correct_rounds": "correct_rounds"}


def client_knobs() -> type[BaseModel]:
    """The schema of a run's ``configurable`` knobs under the operator's limits (knobs.py)."""
    return knob_model(operator().limits, NOT_CONFIGURABLE)


def knobs_of(config: Any) -> dict[str, Any]:
    """The client's per-run knobs from a run's ``configurable`` as config fields, checked against
    the operator's limits and the config itself (one clear error)."""
    given = dict((config or {}).get("configurable") or {})
    for old, new in RENAMED.items():
        if old in given:
            raise ConfigError(f"configurable {old!r} is now {new!r}")
    if given.get("seed") is not None:
        raise ConfigError("the seed goes in the run's input ({\"prompt\": ..., \"seed\": ...}), not in configurable")
    wanted = {k: v for k, v in given.items() if k in KNOBS and v is not None}
    try:
        knobs = to_config(client_knobs()(**wanted))
    except ValidationError as exc:
        field = str(exc.errors()[0]["loc"][0]) if exc.errors() and exc.errors()[0].get("loc") else ""
        why = "this server does not let clients set it" if exc.errors()[0]["type"] == "extra_forbidden" else first_problem(exc)
        raise ConfigError(f"configurable {field}: {why}") from None
    make_config(settings(), **knobs)  # refuses a bad combination before any run starts
    return knobs


def thread_of(run_config: Any) -> str:
    """The server thread a run belongs to (a fresh id where the graph runs without threads)."""
    thread = (run_config or {}).get("configurable", {}).get("thread_id")
    return str(thread) if thread else uuid.uuid4().hex


def create_run(prompt: str, seed: int, wanted: ServerContext, knobs: dict[str, Any], thread: str) -> Run:
    """A new run in a new directory of the runs root, set up by the run layer (the same checks as
    the Python API, all before the directory is made)."""
    config = make_config(settings(), **knobs, seed=seed)
    mllm, generator = choose("mllm", wanted.mllm), choose("generator", wanted.generator)
    run_dir = runs_root() / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    return Run.create(prompt, mllm, generator, config, run_dir=run_dir, thread_id=thread, settings=operator().run_settings,
                      mllm_options=operator_mllm_options())


def own_run_dir(run_dir: str | None, thread: str) -> Path:
    """The run directory a thread may continue: a directory of the runs root whose spec.json
    names this thread. A state edited to name another run's directory is refused."""
    root = runs_root()
    refused = InputError("this thread continues only the run it started; its state names another run directory")
    if not run_dir:
        raise refused
    path = root / Path(run_dir).name
    if Path(run_dir) != path or path.is_symlink() or not path.is_dir():
        raise refused
    try:
        spec = RunSpec.model_validate_json((path / SPEC_FILE).read_bytes())
    except (OSError, ValueError):
        raise refused from None
    if spec.thread_id != thread:
        raise refused
    return path


def reopen_run(run_dir: str | None, thread: str) -> Run:
    return Run.reopen(own_run_dir(run_dir, thread), mllm_options=operator_mllm_options())


async def carry_out(run: Run, **how: Any) -> dict[str, Any]:
    """``Run.execute`` as a run of its own (its own graph and checkpoint, not a subgraph of this
    one), its progress events passed on to the client's custom stream."""
    outcome = await asyncio.create_task(run.execute(on_event=get_stream_writer(), **how),
                                        context=contextvars.Context())
    if isinstance(outcome, PendingReview):
        return {"run_dir": outcome.run_dir, "pending": outcome.request}
    assert isinstance(outcome, GuidanceResult)
    return {"run_dir": outcome.run_dir, "pending": None, "stop_reason": outcome.stop_reason,
            "best": outcome.best_round, "rounds": outcome.rounds, "final_image": outcome.image}


async def start(state: ServerState, runtime: Runtime[ServerContext]) -> dict[str, Any]:
    """Set the run up (run.py) and carry it out until it finishes or pauses for review."""
    run_config = get_config()
    wanted = runtime.context if isinstance(runtime.context, ServerContext) else ServerContext()
    run = await asyncio.to_thread(create_run, state.prompt, state.seed, wanted, knobs_of(run_config),
                                  thread_of(run_config))
    return await carry_out(run)


async def review(state: ServerState, runtime: Runtime[ServerContext]) -> dict[str, Any]:
    """The paused run's review as this graph's interrupt; the decision continues the thread's own run."""
    if state.pending is None:
        return {}
    decision = interrupt(state.pending.model_dump(mode="json"), response_schema=ReviewDecision)
    run = await asyncio.to_thread(reopen_run, state.run_dir, thread_of(get_config()))
    return await carry_out(run, resume=True, decision=decision)


def _node(name: str, step: Any) -> RunnableLambda:
    """An async node that synchronous graph runs (``graph.invoke``) can call as well."""

    async def run_async(state: ServerState) -> dict[str, Any]:
        return await step(state, get_runtime())

    def run_blocking(state: ServerState) -> dict[str, Any]:
        return run_sync(step(state, get_runtime()))

    return RunnableLambda(run_blocking, afunc=run_async, name=name)


def paused(state: ServerState) -> str:
    return "review" if state.pending is not None else END


def build_server_graph(checkpointer: Any = None) -> Any:
    """The server's graph: start -> (review)* -> end, over the run layer."""
    graph = StateGraph(ServerState, context_schema=ServerContext, input_schema=ServerInput,
                       output_schema=ServerOutput)
    graph.add_node("start", _node("start", start))
    graph.add_node("review", _node("review", review))
    graph.add_edge(START, "start")
    graph.add_conditional_edges("start", paused, ["review", END])
    graph.add_conditional_edges("review", paused, ["review", END])
    return graph.compile(checkpointer=checkpointer, name="mllm-guidance")


@functools.lru_cache(maxsize=1)
def _server_graph() -> Any:
    return build_server_graph()


def make_graph(config: Any = None) -> Any:
    """The server's graph (``langgraph.json``); a bad per-run knob is refused here, before the run."""
    knobs_of(config)
    return _server_graph()


graph = make_graph()
