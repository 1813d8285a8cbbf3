"""The graph for the LangGraph server and Studio: ``langgraph dev`` (see ``langgraph.json``).

The server builds its own runs, so the graph here is compiled WITHOUT a checkpointer (the server
persists threads itself) and its context is plain settings a client can send as JSON:

    {"mllm": "openai:gpt-4o", "generator": "gligen-xl", "mllm_base_url": null, "runs_dir": "runs/server"}

Unset fields come from environment variables (``MLLM_GUIDANCE_MLLM``, ``MLLM_GUIDANCE_GENERATOR``,
``MLLM_GUIDANCE_MLLM_BASE_URL``, ``MLLM_GUIDANCE_RUNS_DIR``), then from the usual auto defaults.
The method's knobs come from ``MLLM_GUIDANCE_CONFIG`` (a JSON object of ``GuidanceConfig``
fields). Every server run writes its images and run.json to ``runs_dir/<run id>``.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_guidance.config import make_config
from mllm_guidance.context import Context
from mllm_guidance.evidence.record import package_versions, write_evidence
from mllm_guidance.graph import build_graph
from mllm_guidance.prompts.templates import load_templates
from mllm_guidance.run import RunSpec, build_backends
from mllm_guidance.state import GuidanceState
from mllm_guidance.store import SPEC_FILE, RunStore

@dataclass
class ServerContext:
    """Backends by name, so a server client can choose them per run. The server builds one per
    run; the backends it resolves are kept on it, so every node of the run shares one run directory."""

    mllm: str | None = None
    generator: str | None = None
    mllm_base_url: str | None = None
    runs_dir: str | None = None
    _context: Context | None = field(default=None, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def to_context(self) -> Context:
        with self._lock:
            if self._context is None:
                self._context = self._build()
            return self._context

    def _build(self) -> Context:
        from langgraph.config import get_config

        thread_id = get_config().get("configurable", {}).get("thread_id")
        config = settings()
        mllm = self.mllm or os.environ.get("MLLM_GUIDANCE_MLLM")
        generator = self.generator or os.environ.get("MLLM_GUIDANCE_GENERATOR")
        base_url = self.mllm_base_url or os.environ.get("MLLM_GUIDANCE_MLLM_BASE_URL")
        runs_dir = self.runs_dir or os.environ.get("MLLM_GUIDANCE_RUNS_DIR", "runs/server")
        backends = build_backends(mllm, generator, mllm_options={"base_url": base_url} if base_url else None,
                                  needs_mllm=config.mode != "plain")
        store = RunStore(Path(runs_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}")
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


graph = build_graph(settings(), context_schema=ServerContext)
