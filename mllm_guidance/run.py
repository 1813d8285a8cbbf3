"""The one place where a run is set up and carried out.

A run is described by a typed ``RunSpec`` (what to draw, with which method settings, on which
backends, recorded as ``spec.json`` in the run directory), built into a ``Context`` (the backends,
the run directory, the prompts) and executed by one async path (``Run.execute``), after which the
run layer writes the evidence (run.json, report.html). The Python API, ``resume``, the MCP server,
the agent tool and the benchmark runner all go through here; the LangGraph server, which drives
the graph itself, builds its context with ``build_backends`` and ``RunSpec`` too.

Two kinds of options, each with one meaning:

- MLLM options (``backends.mllm.MllmOptions``): how a spec string becomes a chat model (server,
  timeout, retries, device);
- generator options: the generator's constructor keywords (``model``, ``device``, ``dtype``,
  ``cpu_offload``, ``attention_slicing`` and the backend's own, such as GLIGEN's ``beta``),
  fixed when it is built and recorded, so ``resume`` rebuilds the same generator.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import random
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from mllm_guidance.backends.generator import Generator
from mllm_guidance.backends.mllm import MllmOptions, default_mllm_spec, describe_mllm, model_name, resolve_mllm
from mllm_guidance.backends.registry import create_generator, default_generator_spec
from mllm_guidance.backends.replay import ReplayChatModel
from mllm_guidance.checkpoint import async_sqlite_saver, stored_checkpoints
from mllm_guidance.config import GuidanceConfig, make_config
from mllm_guidance.context import Context
from mllm_guidance.errors import ConfigError, InputError, StorageError
from mllm_guidance.evidence.record import package_versions, write_evidence
from mllm_guidance.evidence.tracing import tracing_callbacks
from mllm_guidance.graph import build_graph
from mllm_guidance.layout import Layout
from mllm_guidance.prompts.templates import load_templates
from mllm_guidance.state import Correction, Failure, GuidanceState, ImageRef, Round, Usage, check_prompt
from mllm_guidance.redact import MASK, redact
from mllm_guidance.review import ReviewDecision, ReviewRequest, as_decision
from mllm_guidance.store import CHECKPOINT_FILE, RUN_FILE, SPEC_FILE, RunStore, storage_error

EventHandler = Callable[[dict[str, Any]], None]
SPEC_FORMAT = "mllm-guidance.spec/1"


class ModelSetting(BaseModel):
    """How one backend of a run was chosen: enough to rebuild it, and to name it in records."""

    spec: str | None = Field(default=None, description="The spec string; None when an object was given.")
    described: str = Field(description="What it was, key-free: ChatOpenAI(gpt-4o), gligen-xl, ...")
    name: str | None = Field(default=None, description="The provider's model name (prices).")
    options: dict[str, Any] = Field(default={}, description="MllmOptions, or the generator's constructor keywords.")
    license: str | None = Field(default=None, description="The weights' license, where the backend states it.")


class RunSpec(BaseModel):
    """What a run was asked to do: written to ``spec.json`` before the first step."""

    format: str = SPEC_FORMAT
    prompt: str
    seed: int
    config: dict[str, Any] = Field(description="GuidanceConfig fields (a callable is_good is named).")
    mllm: ModelSetting | None = Field(description="None for plain runs, which never ask an MLLM.")
    generator: ModelSetting
    thread_id: str
    created: str
    template_set: str
    versions: dict[str, str] = {}

    def guidance_config(self, is_good: Callable[[int, str], bool] | None = None) -> GuidanceConfig:
        """The config back; a run made with a callable is_good needs it given again."""
        settings = dict(self.config)
        if str(settings.get("is_good", "")).startswith("callable:"):
            if is_good is None:
                raise InputError(f"this run used is_good={settings['is_good']}; pass the same is_good to resume it")
            settings["is_good"] = is_good
        elif is_good is not None:
            settings["is_good"] = is_good
        return make_config(settings)

    def models(self) -> dict[str, Any]:
        """The flat view of the backends that records and tables show."""
        m, g = self.mllm, self.generator
        return {
            "mllm": m.described if m else None, "mllm_name": m.name if m else None, "mllm_spec": m.spec if m else None,
            "mllm_options": m.options if m else {}, "generator": g.described, "generator_spec": g.spec,
            "generator_options": g.options, "generator_license": g.license,
        }


@dataclass
class Backends:
    """A run's models, built once; the benchmark runner shares one set across its runs."""

    mllm: BaseChatModel | None
    generator: Generator
    mllm_setting: ModelSetting | None
    generator_setting: ModelSetting


def build_backends(mllm: str | BaseChatModel | None, generator: str | Generator | None, *,
                   mllm_options: MllmOptions | dict[str, Any] | None = None,
                   generator_options: dict[str, Any] | None = None, needs_mllm: bool = True) -> Backends:
    """Resolve both backends (defaults from the environment), before anything is written."""
    try:
        options = mllm_options if isinstance(mllm_options, MllmOptions) else MllmOptions(**(mllm_options or {}))
    except ValueError as exc:
        raise InputError(f"invalid mllm_options: {exc}") from None
    if mllm is None and needs_mllm:
        mllm, _ = default_mllm_spec()
    model = resolve_mllm(mllm, options) if mllm is not None else None
    if generator is None:
        generator, _ = default_generator_spec()
    gen_options = dict(generator_options or {})
    gen = create_generator(generator, **gen_options)
    mllm_setting = None
    if model is not None:
        mllm_setting = ModelSetting(
            spec=_portable_spec(mllm), described=describe_mllm(model), name=model_name(model),
            options=options.model_dump(exclude_defaults=True) if isinstance(mllm, str) else {},
        )
    generator_setting = ModelSetting(
        spec=generator if isinstance(generator, str) else None,
        described=getattr(gen, "name", type(gen).__name__),
        options=gen_options if isinstance(generator, str) else {},
        license=getattr(gen, "weights_license", None),
    )
    return Backends(model, gen, mllm_setting, generator_setting)


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
               generator_options: dict[str, Any] | None = None, backends: Backends | None = None) -> Run:
        """Check the input, build the backends, then (only then) make the run directory."""
        try:
            prompt = check_prompt(prompt)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        cfg = make_config(config)
        templates = load_templates(cfg.templates_dir)
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
        spec = RunSpec(
            prompt=prompt, seed=cfg.seed if cfg.seed is not None else random.randrange(2**31),
            config=cfg.describe(), mllm=backends.mllm_setting, generator=backends.generator_setting,
            thread_id=thread_id or uuid.uuid4().hex, created=_now(), template_set=templates.version,
            versions=dict(package_versions()),
        )
        store.write_json(SPEC_FILE, spec.model_dump(mode="json"))
        return cls(spec, cfg, Context(mllm=backends.mllm, generator=backends.generator, store=store, templates=templates))

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
        context = Context(mllm=backends.mllm, generator=backends.generator, store=store,
                          templates=load_templates(cfg.templates_dir))
        return cls(spec, cfg, context, restart=restart)

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
            graph = build_graph(self.config, checkpointer=saver)
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


def default_run_dir(prompt: str) -> Path:
    import re

    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "run"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{slug}-{uuid.uuid4().hex[:4]}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _portable_spec(mllm: Any) -> str | None:
    """The spec to record for resuming; a replay path is made absolute so any directory works."""
    if not isinstance(mllm, str):
        return None
    if mllm.startswith("replay:"):
        return "replay:" + str(Path(mllm.removeprefix("replay:")).resolve())
    return mllm


__all__ = ["Backends", "GuidanceResult", "ModelSetting", "Run", "RunSpec", "build_backends",
           "default_run_dir"]
