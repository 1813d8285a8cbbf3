"""The graph for the LangGraph server and Studio: ``langgraph dev`` (see ``langgraph.json``).

The server runs with the operator's credentials and disk, on behalf of clients, so what a client may
set is small and checked (issue: trust boundaries). The operator configures the server by its
environment:

- ``MLLM_GUIDANCE_MLLM``, ``MLLM_GUIDANCE_GENERATOR``: the backends (spec strings) runs use;
- ``MLLM_GUIDANCE_ALLOWED_MLLMS``, ``MLLM_GUIDANCE_ALLOWED_GENERATORS``: comma-separated spec strings
  a client may pick instead, exactly as written (nothing else; empty: clients pick nothing);
- ``MLLM_GUIDANCE_MLLM_BASE_URL``: the MLLM server, which only the operator sets (the server's API
  key goes there);
- ``MLLM_GUIDANCE_RUNS_DIR``: the runs root (default ``runs/server``); every run writes into a new
  directory inside it and nowhere else;
- ``MLLM_GUIDANCE_CONFIG``: the method's knobs (a JSON object of ``GuidanceConfig`` fields).

A client sends only ``{"mllm": ..., "generator": ...}`` as the run's context (any other key is
refused), the graph's input is ``{"prompt": ..., "seed": ...}``, and the method's knobs a client
may set per run go in the run's ``configurable`` (``mode``, ``max_align_rounds``,
``max_correct_rounds``, ``is_good`` as a 1-5 threshold, ``repair``, ``judge_mode``; candidates
and verifiers multiply the renders and load models, so they stay the operator's): ``langgraph.json`` points at
``make_graph``, a graph factory that builds (and caches) the graph for those knobs over the
operator's config. Base URLs, recordings
(``replay:``), model paths, template directories and output directories are never the client's to
choose: a spec the operator did not list is refused before any call or file access. The graph is
compiled WITHOUT a checkpointer (the server persists threads itself).
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from mllm_guidance.config import make_config
from mllm_guidance.context import Context
from mllm_guidance.errors import ConfigError
from mllm_guidance.evidence.record import package_versions, write_evidence
from mllm_guidance.graph import build_graph
from mllm_guidance.prompts.templates import load_templates
from mllm_guidance.run import RunSpec, build_backends
from mllm_guidance.state import GuidanceState, ImageRef, Round
from mllm_guidance.store import SPEC_FILE, RunStore

DEFAULT_RUNS_DIR = "runs/server"


def allowed(kind: str) -> list[str]:
    """The spec strings the operator lets clients pick (``MLLM_GUIDANCE_ALLOWED_MLLMS`` ...)."""
    raw = os.environ.get(f"MLLM_GUIDANCE_ALLOWED_{kind.upper()}S", "")
    return [item.strip() for item in raw.split(",") if item.strip()]


def choose(kind: str, wanted: str | None) -> str | None:
    """The backend a run uses: the operator's default, or the client's pick when the operator
    listed it; anything else is refused naming what is allowed."""
    default = os.environ.get(f"MLLM_GUIDANCE_{kind.upper()}")
    if wanted is None or wanted == default:
        return default
    permitted = allowed(kind)
    if wanted in permitted:
        return wanted
    offer = ", ".join(repr(p) for p in ([default] if default else []) + permitted) or "the server's default only"
    raise ConfigError(f"this server does not let clients choose the {kind} {wanted!r}; choose one of: {offer} "
                      f"(the operator allows more with MLLM_GUIDANCE_ALLOWED_{kind.upper()}S)")


def runs_root() -> Path:
    return Path(os.environ.get("MLLM_GUIDANCE_RUNS_DIR", DEFAULT_RUNS_DIR)).resolve()


def continued(run_dir: str | None) -> Path | None:
    """The directory of a run continued after a pause (review), when it lies in the runs root."""
    if not run_dir:
        return None
    path = Path(run_dir).resolve()
    return path if runs_root() in path.parents and path.is_dir() else None


class ServerContext(BaseModel):
    """What a client may set per run: the backends, among those the operator allowed. The server
    builds one per run; the backends it resolves are kept on it, so every node of the run shares
    one run directory."""

    model_config = ConfigDict(extra="forbid")

    mllm: str | None = Field(default=None, description="The MLLM (spec string): the server's, or one of "
                             "MLLM_GUIDANCE_ALLOWED_MLLMS.")
    generator: str | None = Field(default=None, description="The generator (spec string): the server's, or one "
                                  "of MLLM_GUIDANCE_ALLOWED_GENERATORS.")
    _context: Context | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def to_context(self, state: GuidanceState | None = None) -> Context:
        with self._lock:
            if self._context is None:
                self._context = self._build(state.run_dir if state is not None else None)
            return self._context

    def _build(self, run_dir: str | None) -> Context:
        from langgraph.config import get_config

        run_config = get_config()
        thread_id = run_config.get("configurable", {}).get("thread_id")
        config = make_config(settings(), **knobs_of(run_config))  # what this run's graph was built for
        mllm, generator = choose("mllm", self.mllm), choose("generator", self.generator)
        base_url = os.environ.get("MLLM_GUIDANCE_MLLM_BASE_URL")
        backends = build_backends(mllm, generator, mllm_options={"base_url": base_url} if base_url else None,
                                  needs_mllm=config.mode != "plain")
        store = RunStore(continued(run_dir) or runs_root() / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}")
        templates = load_templates(config.templates_dir)
        created = time.strftime("%Y-%m-%dT%H:%M:%S%z")

        def record(state: GuidanceState) -> None:
            """The server drives the graph itself: the evidence is written when it finishes."""
            spec = RunSpec(prompt=state.prompt, seed=state.seed, config=config.describe(), mllm=backends.mllm_setting,
                           generator=backends.generator_setting, thread_id=str(thread_id), created=created,
                           template_set=templates.version, versions=dict(package_versions()))
            store.write_json(SPEC_FILE, spec.model_dump(mode="json"))
            write_evidence(store, state, config, templates, spec)

        return Context(mllm=backends.mllm, generator=backends.generator, store=store, templates=templates,
                       on_finish=record)


def settings() -> Any:
    """The GuidanceConfig from MLLM_GUIDANCE_CONFIG (JSON), else the defaults."""
    raw = os.environ.get("MLLM_GUIDANCE_CONFIG")
    return make_config(json.loads(raw) if raw else None)


class ServerInput(BaseModel):
    """What a client sends to start a run."""

    prompt: str = Field(description="The text the image must show.")
    seed: int = Field(default=0, ge=0, description="Base seed of the renders.")


class ServerOutput(BaseModel):
    """What a finished run returns: the best image's place on the server and every round."""

    prompt: str
    stop_reason: str | None = Field(default=None, description="good, max_rounds, aligned, ...")
    best: int | None = Field(default=None, description="Index of the best round.")
    rounds: list[Round] = Field(default=[], description="Every image with its layout, score and reasoning.")
    final_image: ImageRef | None = Field(default=None, description="The best image, relative to run_dir.")
    run_dir: str | None = Field(default=None, description="The run's directory under the server's runs root.")


#: The method's knobs a client may set per run (``configurable``); everything else is the operator's.
CLIENT_KNOBS = ("mode", "max_align_rounds", "max_correct_rounds", "is_good", "repair", "judge_mode")


def knobs_of(config: Any) -> dict[str, Any]:
    """The client's per-run knobs from a run's config, checked like any config (one clear error)."""
    given = dict((config or {}).get("configurable") or {})
    knobs = {k: given[k] for k in CLIENT_KNOBS if given.get(k) is not None}
    if "is_good" in knobs and not isinstance(knobs["is_good"], int):
        raise ConfigError("is_good: give a score threshold from 1 to 5")
    make_config(settings(), **knobs)  # refuses a bad value before any run starts
    return knobs


@functools.lru_cache(maxsize=32)
def _graph_for(operator_json: str, knobs_json: str) -> Any:
    config = make_config(json.loads(operator_json) if operator_json else None, **json.loads(knobs_json))
    return build_graph(config, context_schema=ServerContext, input_schema=ServerInput, output_schema=ServerOutput)


def make_graph(config: Any = None) -> Any:
    """The server's graph for one run: the operator's config with the client's per-run knobs
    (one compiled graph per combination, cached)."""
    return _graph_for(os.environ.get("MLLM_GUIDANCE_CONFIG", ""), json.dumps(knobs_of(config), sort_keys=True))


graph = make_graph()
