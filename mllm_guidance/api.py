"""The Python API: ``guide`` runs the method on one prompt, ``resume`` continues a run that crashed
or was interrupted, ``plan`` returns the layout only. Each has an async twin (``aguide``...).

The async functions are the implementation (``run.Run.execute``); the sync ones run the same
coroutine on the package's background event loop (``background.run_sync``), so they work in
scripts and in notebooks alike. Every run gets a directory (``run_dir``) with its images, call
log, ``spec.json``, ``run.json`` and report, and by default a SQLite checkpoint keyed by a thread
id, so that ``resume(run_dir)`` picks up at the step that did not finish, without repeating the
MLLM calls and renders already done.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel

from mllm_guidance.background import run_sync
from mllm_guidance.backends.generator import Generator
from mllm_guidance.backends.mllm import MllmOptions
from mllm_guidance.config import GuidanceConfig, make_config
from mllm_guidance.layout import Layout
from mllm_guidance.review import ReviewDecision
from mllm_guidance.run_settings import RunSettings
from mllm_guidance.run import EventHandler, GuidanceResult, PendingReview, ReviewHandler, Run
from mllm_guidance.spec import default_run_dir

__all__ = ["GuidanceResult", "PendingReview", "PlanResult", "aguide", "aplan", "aresume", "default_run_dir", "guide", "plan", "resume"]


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
    mllm_options: MllmOptions | dict[str, Any] | None = None,
    generator_options: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
    review: ReviewHandler | Literal["interrupt"] | None = None,
    settings: RunSettings | dict[str, Any] | None = None,
) -> GuidanceResult | PendingReview:
    """Run MLLM Guidance on one prompt and return the best image with the whole trace.

    ``config`` holds the method's knobs (``GuidanceConfig``); ``settings`` how the run asks and
    reports (``RunSettings``: prompt files, MLLM image size and format, structured answers, prices).

    ``mllm_options`` apply when ``mllm`` is a spec string (``backends.mllm.MllmOptions``):
    ``base_url`` (an OpenAI-compatible or Ollama server), ``timeout`` (seconds per call),
    ``retries``, ``device`` and ``dtype`` (in-process models). ``generator_options`` are the
    generator's constructor keywords when ``generator`` is a spec string: ``model`` (hub id or
    local path), ``device``, ``dtype``, ``cpu_offload``, ``attention_slicing`` and the backend's
    own (``beta``, ...). Both are recorded, so ``resume`` rebuilds the same backends.

    ``review`` lets a person approve, edit or stop the layout before it is rendered
    (``mllm_guidance.review``; at the plan, and after each align with ``config.review="plan+align"``):
    a callable answers each ``ReviewRequest`` with a ``ReviewDecision`` inline; ``"interrupt"``
    returns a ``PendingReview`` at the first pause, continued by ``resume(run_dir, decision=...)``.
    """
    config = _with_review(config, review)
    run = Run.create(prompt, mllm, generator, config, run_dir=run_dir, thread_id=thread_id,
                     mllm_options=mllm_options, generator_options=generator_options, settings=settings)
    return await run.execute(checkpoint=checkpoint, on_event=on_event, callbacks=callbacks,
                             review=None if review == "interrupt" else review)


def _with_review(config: GuidanceConfig | dict[str, Any] | None, review: Any) -> GuidanceConfig:
    """The config, reviewing the plan when a reviewer is given and the config asks for none."""
    cfg = make_config(config)
    if review is not None and cfg.review == "off":
        cfg = make_config(cfg, review="plan")
    return cfg


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
    mllm_options: MllmOptions | dict[str, Any] | None = None,
    generator_options: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
    review: ReviewHandler | Literal["interrupt"] | None = None,
    settings: RunSettings | dict[str, Any] | None = None,
) -> GuidanceResult | PendingReview:
    """``aguide`` for synchronous code (same arguments, same result)."""
    return run_sync(aguide(prompt, mllm, generator, config, run_dir=run_dir, thread_id=thread_id,
                           checkpoint=checkpoint, on_event=on_event, mllm_options=mllm_options,
                           generator_options=generator_options, callbacks=callbacks, review=review,
                           settings=settings))


async def aresume(
    run_dir: str | Path,
    mllm: str | BaseChatModel | None = None,
    generator: str | Generator | None = None,
    *,
    is_good: Callable[[int, str], bool] | None = None,
    on_event: EventHandler | None = None,
    mllm_options: MllmOptions | dict[str, Any] | None = None,
    decision: ReviewDecision | dict[str, Any] | str | None = None,
    review: ReviewHandler | None = None,
) -> GuidanceResult | PendingReview:
    """Continue a checkpointed run from the step that did not finish (or return it if done).

    The backends recorded as spec strings are rebuilt; pass ``mllm`` / ``generator`` when the
    run was given objects, and ``is_good`` when it used a callable. ``mllm_options`` override
    the recorded ones (a server URL with credentials in it is stored masked: give it again). A
    run that stopped before its first checkpoint starts again in place from its spec. A run paused
    for review continues with ``decision`` (and asks ``review`` at later pauses, if given).
    """
    run = Run.reopen(run_dir, mllm, generator, is_good, mllm_options=mllm_options)
    return await run.execute(resume=True, on_event=on_event, decision=decision, review=review)


def resume(
    run_dir: str | Path,
    mllm: str | BaseChatModel | None = None,
    generator: str | Generator | None = None,
    *,
    is_good: Callable[[int, str], bool] | None = None,
    on_event: EventHandler | None = None,
    mllm_options: MllmOptions | dict[str, Any] | None = None,
    decision: ReviewDecision | dict[str, Any] | str | None = None,
    review: ReviewHandler | None = None,
) -> GuidanceResult | PendingReview:
    """``aresume`` for synchronous code."""
    return run_sync(aresume(run_dir, mllm, generator, is_good=is_good, on_event=on_event, mllm_options=mllm_options,
                            decision=decision, review=review))


class PlanResult(BaseModel):
    """A planned layout (place, then self-correct) with a sketch preview of it."""

    prompt: str
    layout: Layout | None
    warnings: list[str]
    preview_path: str
    run_dir: str
    result: GuidanceResult


async def aplan(
    prompt: str,
    mllm: str | BaseChatModel | None = None,
    *,
    correct_rounds: int = 5,
    config: GuidanceConfig | dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    on_event: EventHandler | None = None,
    mllm_options: MllmOptions | dict[str, Any] | None = None,
    settings: RunSettings | dict[str, Any] | None = None,
) -> PlanResult:
    """The layout an image of ``prompt`` should have, without rendering it: place, then
    self-correct up to ``correct_rounds`` times (0: place only); the preview is the sketch."""
    mode = "place+correct" if correct_rounds > 0 else "place"
    cfg = make_config(config, mode=mode, max_correct_rounds=correct_rounds, seed=0)
    result = await Run.create(prompt, mllm, "sketch", cfg, run_dir=run_dir, mllm_options=mllm_options,
                              settings=settings).execute(
        checkpoint=False, on_event=on_event)
    layout = result.layout
    return PlanResult(prompt=result.prompt, layout=layout, warnings=layout.rule_warnings() if layout else [],
                      preview_path=str(result.image_path), run_dir=result.run_dir, result=result)


def plan(
    prompt: str,
    mllm: str | BaseChatModel | None = None,
    *,
    correct_rounds: int = 5,
    config: GuidanceConfig | dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    on_event: EventHandler | None = None,
    mllm_options: MllmOptions | dict[str, Any] | None = None,
    settings: RunSettings | dict[str, Any] | None = None,
) -> PlanResult:
    """``aplan`` for synchronous code."""
    return run_sync(aplan(prompt, mllm, correct_rounds=correct_rounds, config=config, run_dir=run_dir,
                          on_event=on_event, mllm_options=mllm_options, settings=settings))
