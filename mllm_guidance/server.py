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

from mllm_guidance.backends.generator import create_generator, default_generator_spec
from mllm_guidance.backends.mllm import describe_mllm, model_name, resolve_mllm
from mllm_guidance.config import Context, make_config
from mllm_guidance.graph import build_graph
from mllm_guidance.prompts.templates import load_templates
from mllm_guidance.store import META_FILE, RunStore

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
        mllm = self.mllm or os.environ.get("MLLM_GUIDANCE_MLLM")
        generator = self.generator or os.environ.get("MLLM_GUIDANCE_GENERATOR") or default_generator_spec()[0]
        base_url = self.mllm_base_url or os.environ.get("MLLM_GUIDANCE_MLLM_BASE_URL")
        runs_dir = self.runs_dir or os.environ.get("MLLM_GUIDANCE_RUNS_DIR", "runs/server")
        model = resolve_mllm(mllm, **({"base_url": base_url} if base_url else {}))
        store = RunStore(Path(runs_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}")
        templates = load_templates(settings().templates_dir)
        store.write_json(META_FILE, {
            "models": {"mllm": describe_mllm(model), "mllm_name": model_name(model), "mllm_spec": mllm,
                       "generator": generator, "generator_spec": generator},
            "thread_id": thread_id, "template_set": templates.version,
        })
        return Context(mllm=model, generator=create_generator(generator), store=store, templates=templates)


def settings() -> Any:
    """The GuidanceConfig from MLLM_GUIDANCE_CONFIG (JSON), else the defaults."""
    raw = os.environ.get("MLLM_GUIDANCE_CONFIG")
    return make_config(json.loads(raw) if raw else None)


graph = build_graph(settings(), context_schema=ServerContext)
