"""Carrying runs out: ``Run.create`` / ``Run.reopen`` set a run up from its spec (``spec.py``:
what a run is, its backends, its Context) and ``Run.execute`` runs it, the one execution path, after
which the run layer writes the evidence (run.json, report.html). The Python API, ``resume``, the
servers, the agent tool and the benchmark runner all go through here.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mllm_guidance.backends.mllm_options import MllmOptions
from mllm_guidance.backends.replay import ReplayChatModel
from mllm_guidance.checkpoint import async_sqlite_saver, stored_checkpoints
from mllm_guidance.config import GuidanceConfig, make_config
from mllm_guidance.context import Context
from mllm_guidance.errors import ConfigError, InputError, StorageError
from mllm_guidance.evidence.record import write_evidence
from mllm_guidance.evidence.tracing import tracing_callbacks
from mllm_guidance.graph import compiled_graph, with_checkpointer
from mllm_guidance.layout import Layout
from mllm_guidance.prompts.templates import load_templates
from mllm_guidance.redact import MASK, redact
from mllm_guidance.review import ReviewDecision, ReviewRequest, as_decision
from mllm_guidance.run_settings import RunSettings, make_settings
from mllm_guidance.spec import Backends, RunSpec, build_backends, build_context, default_run_dir, new_spec
from mllm_guidance.state import Correction, Failure, GuidanceState, ImageRef, Round, Usage, check_prompt
from mllm_guidance.store import CHECKPOINT_FILE, RUN_FILE, SPEC_FILE, RunStore, storage_error

EventHandler = Callable[[dict[str, Any]], None]


class GuidanceResult(BaseModel):
    """What a run produced: the best image, every round, and what it cost."""

    prompt: str
    run_dir: str
    image: ImageRef
    best_round: int
    score: int | None
    stop_reason: str
    rounds: list[Round]
    corrections: list[Correction]
    failures: list[Failure]
    usage: Usage
    seconds: float
    template_version: str
    thread_id: str

    @property
    def image_path(self) -> Path:
        return Path(self.run_dir) / self.image.path

    @property
    def layout(self) -> Layout | None:
        return self.rounds[self.best_round].layout

    def load_image(self) -> Any:
        return RunStore(self.run_dir).load_image(self.image)


#: A reviewer: takes what the run is about to render, answers approve / edit / stop (sync or async).
ReviewHandler = Callable[[ReviewRequest], Any]


class PendingReview(BaseModel):
    """A run paused for review: show ``request`` to a person, then ``resume(run_dir, decision=...)``."""

    run_dir: str
    thread_id: str
    request: ReviewRequest
    stop_reason: str = "review"


class Run:
    """One run: its spec, config and context, and the one way to carry it out."""

    def __init__(self, spec: RunSpec, config: GuidanceConfig, context: Context, *, restart: bool = False) -> None:
        self.spec, self.config, self.context = spec, config, context
        #: reopened before its first checkpoint: ``execute(resume=True)`` starts it again in place
        self.restart = restart

    @property
    def store(self) -> RunStore:
        return self.context.store

    @classmethod
    def create(cls, prompt: str, mllm: Any = None, generator: Any = None,
               config: GuidanceConfig | dict[str, Any] | None = None, *, run_dir: str | Path | None = None,
               thread_id: str | None = None, mllm_options: MllmOptions | dict[str, Any] | None = None,
               generator_options: dict[str, Any] | None = None, backends: Backends | None = None,
               settings: RunSettings | dict[str, Any] | None = None) -> Run:
        """Check the input, build the backends, then (only then) make the run directory."""
        try:
            prompt = check_prompt(prompt)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        cfg, how = make_config(config), make_settings(settings)
        templates = load_templates(how.templates_dir)
        templates.require("align", cfg.align_blocks(), f"align_context={cfg.align_context}, align_empty={cfg.align_empty}")
        if backends is None:
            backends = build_backends(mllm, generator, mllm_options=mllm_options,
                                      generator_options=generator_options, needs_mllm=cfg.mode != "plain")
        store = RunStore(run_dir if run_dir is not None else default_run_dir(prompt))
        if store.path(SPEC_FILE).exists():
            if not never_started(store.root):
                raise InputError(
                    f"{store.root} already holds a run; resume it (--resume {store.root}) or choose "
                    "another output directory"
                )
            store.clear_attempt()  # an attempt that stopped before its first checkpoint (a full disk, a kill)
        spec = new_spec(prompt, cfg, how, backends, templates, thread_id)
        store.write_json(SPEC_FILE, spec.model_dump(mode="json"))
        return cls(spec, cfg, build_context(backends, store, templates, cfg, how))

    @classmethod
    def reopen(cls, run_dir: str | Path, mllm: Any = None, generator: Any = None,
               is_good: Callable[[int, str], bool] | None = None,
               mllm_options: MllmOptions | dict[str, Any] | None = None) -> Run:
        """A checkpointed run as it was set up, its backends rebuilt from the spec (or given).

        A run that stopped before its first checkpoint (a full disk right after spec.json, a kill)
        is reopened too, to start again in place from its spec. ``mllm_options`` override the
        recorded ones: a server URL that held credentials was stored masked and must be given again."""
        root = Path(run_dir)
        if not root.exists():
            raise InputError(f"{root} does not exist; give the directory a run wrote to (its --out)")
        restart = False
        if not root.is_dir() or stored_checkpoints(root / CHECKPOINT_FILE) == 0:
            if not never_started(root):
                raise InputError(
                    f"{root} has no checkpoint to resume (a run made with --no-checkpoint, or not a "
                    "run directory); start the run again in a new directory"
                )
            restart = True
        store = RunStore(root)
        try:
            spec = RunSpec.model_validate(store.read_json(SPEC_FILE))
        except ValueError as exc:
            raise InputError(f"{store.path(SPEC_FILE)} is not a run spec this version reads ({exc})") from None
        cfg = spec.guidance_config(is_good)
        if mllm is None and spec.mllm is not None:
            mllm = spec.mllm.spec
            if mllm is None:
                raise InputError("this run was given a chat model object; pass mllm= to resume it")
        if generator is None:
            generator = spec.generator.spec
            if generator is None:
                raise InputError("this run was given a generator object; pass generator= to resume it")
        options = None
        if spec.mllm and isinstance(mllm, str):
            given = mllm_options.model_dump(exclude_unset=True) if isinstance(mllm_options, MllmOptions) else dict(mllm_options or {})
            options = {**spec.mllm.options, **{k: v for k, v in given.items() if v is not None}}
            if MASK in str(options.get("base_url") or ""):
                raise InputError(
                    f"this run's MLLM server URL held credentials, which are never stored ({options['base_url']}); "
                    f"give it again: mllm-guidance generate --resume {root} --mllm-base-url URL"
                )
        backends = build_backends(
            mllm, generator, needs_mllm=spec.mllm is not None, mllm_options=options,
            generator_options=spec.generator.options if isinstance(generator, str) else None,
        )
        how = spec.run_settings()
        return cls(spec, cfg, build_context(backends, store, load_templates(how.templates_dir), cfg, how), restart=restart)

    def run_config(self, callbacks: list[Any] | None = None) -> dict[str, Any]:
        cfg, models = self.config, self.spec.models()
        return {
            "configurable": {"thread_id": self.spec.thread_id},
            "recursion_limit": 4 * (cfg.correct_limit + cfg.max_align_rounds) + 20,
            "callbacks": list(callbacks or []) + tracing_callbacks(),
            "tags": ["mllm-guidance", f"mode:{cfg.mode}"],
            "metadata": redact({  # checkpoint metadata and traces carry it
                "thread_id": self.spec.thread_id,
                "mllm_guidance_mode": cfg.mode,
                "mllm_guidance_k": cfg.max_align_rounds,
                "mllm_guidance_templates": self.context.templates.version,
                "mllm_guidance_mllm": models["mllm"],
                "mllm_guidance_generator": models["generator"],
            }),
        }

    async def execute(self, *, resume: bool = False, checkpoint: bool = True, on_event: EventHandler | None = None,
                      callbacks: list[Any] | None = None, review: ReviewHandler | None = None,
                      decision: Any = None) -> GuidanceResult | PendingReview:
        """Run the graph (from the start, or from the checkpoint when ``resume``), then write the
        evidence. This is the only execution path; the sync API drives it on the background loop.

        Where the config asks for review, each pause goes to ``review`` (a callable taking a
        ``ReviewRequest`` and returning a ``ReviewDecision``); without one, the run stops there and
        returns a ``PendingReview``; ``decision`` answers the pause a resumed run stopped at."""
        if resume and not checkpoint:
            raise ConfigError("resuming needs the run's checkpoint")
        if self.config.review != "off" and not checkpoint:
            raise ConfigError("review pauses the run, which needs its checkpoint; drop --no-checkpoint or --review")
        if decision is not None:
            decision = as_decision(decision)  # an unusable decision is refused before the run is touched
        if resume and self.restart:
            self.store.clear_attempt()
            resume = False
        started = time.perf_counter()
        try:
            return await self._execute(resume, checkpoint, on_event, callbacks, started, review, decision)
        except sqlite3.OperationalError as exc:  # the checkpoint file: a full or read-only disk
            error = sqlite_storage_error(exc, self.store.path(CHECKPOINT_FILE))
            if error is exc:
                raise
            raise error from None

    async def _execute(self, resume: bool, checkpoint: bool, on_event: EventHandler | None,
                       callbacks: list[Any] | None, started: float, review: ReviewHandler | None,
                       decision: ReviewDecision | None) -> GuidanceResult | PendingReview:
        from langgraph.types import Command

        saver = await async_sqlite_saver(self.store.path(CHECKPOINT_FILE), self.store.flush) if checkpoint else None
        try:
            graph = with_checkpointer(compiled_graph(), saver)
            run_config = self.run_config(callbacks)
            if resume:
                await asyncio.to_thread(self._before_resume, (await graph.aget_state(run_config)).values)
            payload: Any = None if resume else {"prompt": self.spec.prompt, "seed": self.spec.seed}
            if decision is not None:
                payload = Command(resume=decision.model_dump(mode="json"))
            values: Any = None
            while True:
                async for mode, chunk in graph.astream(payload, run_config, context=self.context,
                                                       stream_mode=["custom", "values"]):
                    if mode == "custom" and on_event is not None:
                        on_event(chunk)
                    elif mode == "values":
                        values = chunk
                if saver is None:
                    break
                snapshot = await graph.aget_state(run_config)  # a resumed finished run streams nothing
                values = snapshot.values
                paused = [i for task in snapshot.tasks for i in task.interrupts]
                if not paused:
                    break
                request = ReviewRequest.model_validate(paused[0].value)
                if review is None:
                    return PendingReview(run_dir=str(self.store.root), thread_id=self.spec.thread_id, request=request)
                if inspect.iscoroutinefunction(review):
                    answer = await review(request)
                else:  # a person at a terminal or a UI: never block the event loop while they think
                    answer = await asyncio.to_thread(review, request)
                    if inspect.isawaitable(answer):
                        answer = await answer
                payload = Command(resume=as_decision(answer).model_dump(mode="json"))
        finally:
            if saver is not None:
                await saver.conn.close()
        state = values if isinstance(values, GuidanceState) else GuidanceState.model_validate(values)
        if state.final_image is None or state.best is None:
            raise InputError(f"the run in {self.store.root} has not finished; resume it")
        # run.json and report.html off the event loop: concurrent runs (bench, servers) keep going
        await asyncio.to_thread(write_evidence, self.store, state, self.config, self.context.templates, self.spec)
        return redact(GuidanceResult(  # what every face prints or sends on: secrets masked
            prompt=state.prompt, run_dir=str(self.store.root), image=state.final_image, best_round=state.best,
            score=state.rounds[state.best].score, stop_reason=state.stop_reason or "done", rounds=state.rounds,
            corrections=state.corrections, failures=state.failures, usage=state.usage,
            seconds=round(time.perf_counter() - started, 4), template_version=self.context.templates.version,
            thread_id=self.spec.thread_id,
        ))

    def _before_resume(self, values: Any) -> None:
        """A replayed MLLM continues after the answers the checkpointed steps already used."""
        if not values:
            raise InputError(f"the checkpoint in {self.store.root} is empty; start the run again")
        if isinstance(self.context.mllm, ReplayChatModel):
            committed = set(values.get("call_ids") or [])
            self.context.mllm.skip_used([c for c in self.store.calls() if c.get("id") in committed])


def never_started(root: Path) -> bool:
    """A run directory whose run stopped before its first checkpoint (spec.json, no run.json, no
    checkpoint stored): nothing in it can be resumed, so it may be started again in place."""
    return ((root / SPEC_FILE).is_file() and not (root / RUN_FILE).exists()
            and stored_checkpoints(root / CHECKPOINT_FILE) == 0)


def sqlite_storage_error(exc: Exception, path: Path) -> StorageError | Exception:
    """SQLite's own words for a refused write, as the store's one line."""
    import errno

    text = str(exc).lower()
    if "full" in text:
        return storage_error(OSError(errno.ENOSPC, "No space left on device"), path, None)
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return storage_error(OSError(errno.EACCES, "Permission denied"), path, None)
    return exc


__all__ = ["EventHandler", "GuidanceResult", "PendingReview", "ReviewHandler", "Run"]
