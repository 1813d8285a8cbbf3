"""The Python API: ``guide`` / ``aguide`` run the method on one prompt, ``resume`` / ``aresume``
continue a run that crashed or was interrupted.

Every run gets a directory (``run_dir``) with its images, call log, ``run.json`` and report, and
by default a SQLite checkpoint keyed by a thread id, so that ``resume(run_dir)`` picks up at the
step that did not finish, without repeating the MLLM calls and renders already done.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel

from mllm_guidance.backends.generator import Generator, create_generator, default_generator_spec
from mllm_guidance.backends.mllm import describe_mllm, model_name, resolve_mllm
from mllm_guidance.backends.replay import ReplayChatModel
from mllm_guidance.checkpoint import async_sqlite_saver, sqlite_saver
from mllm_guidance.config import Context, GuidanceConfig, make_config
from mllm_guidance.errors import InputError
from mllm_guidance.graph import build_graph
from mllm_guidance.layout import Layout
from mllm_guidance.prompts.templates import load_templates
from mllm_guidance.report import package_versions
from mllm_guidance.state import Correction, Failure, GuidanceState, ImageRef, Round, Usage, check_prompt
from mllm_guidance.store import CHECKPOINT_FILE, META_FILE, RunStore
from mllm_guidance.tracing import tracing_callbacks

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


def guide(
    prompt: str,
    mllm: str | BaseChatModel | None = None,
    generator: str | Generator | None = None,
    config: GuidanceConfig | dict[str, Any] | None = None,
    *,
    run_dir: str | Path | None = None,
    thread_id: str | None = None,
    checkpoint: bool = True,
    on_event: EventHandler | None = None,
    mllm_options: dict[str, Any] | None = None,
    generator_options: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
) -> GuidanceResult:
    """Run MLLM Guidance on one prompt and return the best image with the whole trace.

    ``mllm_options`` go to the resolver when ``mllm`` is a spec string: ``base_url`` (an
    OpenAI-compatible or Ollama server), ``timeout`` (seconds per call), ``device`` and ``dtype``
    (in-process models). ``generator_options`` go to the generator when ``generator`` is a spec
    string: ``model`` (hub id or local path), ``device``, ``dtype``, ``cpu_offload``,
    ``attention_slicing`` and the backend's own (``beta``, ``steps``, ...). Both are recorded, so
    ``resume`` rebuilds the same backends.
    """
    run = _Run.new(prompt, mllm, generator, config, run_dir, thread_id, mllm_options, generator_options)
    run.callbacks = list(callbacks or [])
    return run.invoke(run.input(), checkpoint, on_event)


async def aguide(
    prompt: str,
    mllm: str | BaseChatModel | None = None,
    generator: str | Generator | None = None,
    config: GuidanceConfig | dict[str, Any] | None = None,
    *,
    run_dir: str | Path | None = None,
    thread_id: str | None = None,
    checkpoint: bool = True,
    on_event: EventHandler | None = None,
    mllm_options: dict[str, Any] | None = None,
    generator_options: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
) -> GuidanceResult:
    """``guide`` for asyncio applications."""
    run = _Run.new(prompt, mllm, generator, config, run_dir, thread_id, mllm_options, generator_options)
    run.callbacks = list(callbacks or [])
    return await run.ainvoke(run.input(), checkpoint, on_event)


def resume(
    run_dir: str | Path,
    mllm: str | BaseChatModel | None = None,
    generator: str | Generator | None = None,
    *,
    is_good: Callable[[int, str], bool] | None = None,
    on_event: EventHandler | None = None,
) -> GuidanceResult:
    """Continue a checkpointed run from the step that did not finish (or return it if done).

    The backends recorded as spec strings are rebuilt; pass ``mllm`` / ``generator`` when the
    run was given objects, and ``is_good`` when it used a callable.
    """
    run = _Run.reopen(run_dir, mllm, generator, is_good)
    return run.invoke(None, True, on_event)


async def aresume(
    run_dir: str | Path,
    mllm: str | BaseChatModel | None = None,
    generator: str | Generator | None = None,
    *,
    is_good: Callable[[int, str], bool] | None = None,
    on_event: EventHandler | None = None,
) -> GuidanceResult:
    run = _Run.reopen(run_dir, mllm, generator, is_good)
    return await run.ainvoke(None, True, on_event)


def default_run_dir(prompt: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "run"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{slug}-{uuid.uuid4().hex[:4]}"


class _Run:
    """One run's pieces: config, backends, store, and how to invoke the graph on them."""

    def __init__(self, config: GuidanceConfig, ctx: Context, meta: dict[str, Any]) -> None:
        self.config, self.ctx, self.meta = config, ctx, meta
        self.callbacks: list[Any] = []

    @classmethod
    def new(cls, prompt: str, mllm: Any, generator: Any, config: Any, run_dir: Any, thread_id: str | None,
            mllm_options: dict[str, Any] | None = None, generator_options: dict[str, Any] | None = None) -> _Run:
        try:
            prompt = check_prompt(prompt)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        cfg = make_config(config)
        store = RunStore(run_dir if run_dir is not None else default_run_dir(prompt))
        if store.path(META_FILE).exists():
            raise InputError(
                f"{store.root} already holds a run; resume it (--resume {store.root}) or choose "
                "another output directory"
            )
        templates = load_templates(cfg.templates_dir)
        mllm_options = dict(mllm_options or {})
        generator_options = dict(generator_options or {})
        if generator is None:
            generator, _ = default_generator_spec()
        ctx = _context(cfg, mllm, generator, store, templates, mllm_options, generator_options)
        meta = {
            "prompt": prompt,
            "seed": cfg.seed if cfg.seed is not None else random.randrange(2**31),
            "config": cfg.describe(),
            "models": {
                "mllm": describe_mllm(ctx.mllm) if ctx.mllm is not None else None,
                "mllm_name": model_name(ctx.mllm) if ctx.mllm is not None else None,
                "mllm_spec": _portable_spec(mllm),
                "mllm_options": mllm_options,
                "generator": getattr(ctx.generator, "name", type(ctx.generator).__name__),
                "generator_spec": generator if isinstance(generator, str) else None,
                "generator_options": generator_options,
            },
            "thread_id": thread_id or uuid.uuid4().hex,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "template_set": templates.version,
            "versions": dict(package_versions()),
        }
        store.write_json(META_FILE, meta)
        return cls(cfg, ctx, meta)

    @classmethod
    def reopen(cls, run_dir: Any, mllm: Any, generator: Any, is_good: Any) -> _Run:
        store = RunStore(run_dir)
        if not store.path(CHECKPOINT_FILE).exists():
            raise InputError(
                f"{store.root} has no checkpoint to resume (a run made with --no-checkpoint, or not a "
                "run directory); start the run again in a new directory"
            )
        meta = store.read_json(META_FILE)
        settings = dict(meta["config"])
        if str(settings.get("is_good", "")).startswith("callable:"):
            if is_good is None:
                raise InputError(f"this run used is_good={settings['is_good']}; pass the same is_good to resume it")
            settings["is_good"] = is_good
        elif is_good is not None:
            settings["is_good"] = is_good
        cfg = make_config(settings)
        models = meta.get("models", {})
        if mllm is None and cfg.mode != "plain":
            mllm = models.get("mllm_spec")
            if mllm is None:
                raise InputError("this run was given a chat model object; pass mllm= to resume it")
        if generator is None:
            generator = models.get("generator_spec")
            if generator is None:
                raise InputError("this run was given a generator object; pass generator= to resume it")
        options = (models.get("mllm_options") or {}) if isinstance(mllm, str) else {}
        gen_options = (models.get("generator_options") or {}) if isinstance(generator, str) else {}
        ctx = _context(cfg, mllm, generator, store, load_templates(cfg.templates_dir), options, gen_options)
        return cls(cfg, ctx, meta)

    def input(self) -> dict[str, Any]:
        return {"prompt": self.meta["prompt"], "seed": self.meta["seed"]}

    def _run_config(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "configurable": {"thread_id": self.meta["thread_id"]},
            "recursion_limit": 4 * (cfg.max_correct_rounds + cfg.max_align_rounds) + 20,
            "callbacks": self.callbacks + tracing_callbacks(),
            "tags": ["mllm-guidance", f"mode:{cfg.mode}"],
            "metadata": {
                "thread_id": self.meta["thread_id"],
                "mllm_guidance_mode": cfg.mode,
                "mllm_guidance_k": cfg.max_align_rounds,
                "mllm_guidance_templates": self.ctx.templates.version,
                "mllm_guidance_mllm": self.meta["models"].get("mllm"),
                "mllm_guidance_generator": self.meta["models"].get("generator"),
            },
        }

    def invoke(self, payload: dict[str, Any] | None, checkpoint: bool, on_event: EventHandler | None) -> GuidanceResult:
        started = time.perf_counter()
        saver = sqlite_saver(self.ctx.store.path(CHECKPOINT_FILE)) if checkpoint else None
        try:
            graph = build_graph(self.config, checkpointer=saver)
            run_config = self._run_config()
            if payload is None:
                self._before_resume(graph.get_state(run_config).values)
            values: Any = None
            for mode, chunk in graph.stream(payload, run_config, context=self.ctx, stream_mode=["custom", "values"]):
                if mode == "custom" and on_event is not None:
                    on_event(chunk)
                elif mode == "values":
                    values = chunk
            if saver is not None:  # a resumed run that had already finished streams nothing
                values = graph.get_state(run_config).values
        finally:
            if saver is not None:
                saver.conn.close()
        return self._result(values, time.perf_counter() - started)

    async def ainvoke(self, payload: dict[str, Any] | None, checkpoint: bool, on_event: EventHandler | None) -> GuidanceResult:
        started = time.perf_counter()
        saver = await async_sqlite_saver(self.ctx.store.path(CHECKPOINT_FILE)) if checkpoint else None
        values: Any = None
        try:
            graph = build_graph(self.config, checkpointer=saver)
            run_config = self._run_config()
            if payload is None:
                self._before_resume((await graph.aget_state(run_config)).values)
            async for mode, chunk in graph.astream(payload, run_config, context=self.ctx, stream_mode=["custom", "values"]):
                if mode == "custom" and on_event is not None:
                    on_event(chunk)
                elif mode == "values":
                    values = chunk
            if saver is not None:
                values = (await graph.aget_state(run_config)).values
        finally:
            if saver is not None:
                await saver.conn.close()
        return self._result(values, time.perf_counter() - started)

    def _before_resume(self, values: Any) -> None:
        """A replayed MLLM continues after the answers the checkpointed steps already used."""
        if not values:
            raise InputError(f"the checkpoint in {self.ctx.store.root} is empty; start the run again")
        if isinstance(self.ctx.mllm, ReplayChatModel):
            committed = set(values.get("call_ids") or [])
            self.ctx.mllm.skip_used([c for c in self.ctx.store.calls() if c.get("id") in committed])

    def _result(self, values: Any, seconds: float) -> GuidanceResult:
        state = values if isinstance(values, GuidanceState) else GuidanceState.model_validate(values)
        if state.final_image is None or state.best is None:
            raise InputError(f"the run in {self.ctx.store.root} has not finished; resume it")
        return GuidanceResult(
            prompt=state.prompt,
            run_dir=str(self.ctx.store.root),
            image=state.final_image,
            best_round=state.best,
            score=state.rounds[state.best].score,
            stop_reason=state.stop_reason or "done",
            rounds=state.rounds,
            corrections=state.corrections,
            failures=state.failures,
            usage=state.usage,
            seconds=round(seconds, 4),
            template_version=self.ctx.templates.version,
            thread_id=self.meta["thread_id"],
        )


def _portable_spec(mllm: Any) -> str | None:
    """The spec to record for resuming; a replay path is made absolute so any directory works."""
    if not isinstance(mllm, str):
        return None
    if mllm.startswith("replay:"):
        return "replay:" + str(Path(mllm.removeprefix("replay:")).resolve())
    return mllm


_MLLM_OPTIONS = {"base_url", "timeout", "device", "dtype"}


def _context(cfg: GuidanceConfig, mllm: Any, generator: Any, store: RunStore, templates: Any,
             mllm_options: dict[str, Any], generator_options: dict[str, Any]) -> Context:
    unknown = set(mllm_options) - _MLLM_OPTIONS
    if unknown:
        raise InputError(f"unknown mllm_options {sorted(unknown)}; use {sorted(_MLLM_OPTIONS)}")
    model = None if cfg.mode == "plain" and mllm is None else resolve_mllm(mllm, **mllm_options)
    gen = create_generator(generator, **generator_options)
    return Context(mllm=model, generator=gen, store=store, templates=templates)  # type: ignore[arg-type]
