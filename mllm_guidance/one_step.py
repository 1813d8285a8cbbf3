"""One MLLM step on an image the caller already has: ``judge`` (reason: score and reasoning) and
``align`` (a new layout for the image), outside the guidance loop.

For faces that own the rendering themselves (the ComfyUI nodes, a user's own pipeline): the same
templates, reader, parse retries and model retry policy as the graph's ``reason`` and ``align``
nodes (``nodes.ask.ask``), and the same call log, written to a run directory (``run_dir``, default a
fresh one under the default runs folder) so every request and answer can be read afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from mllm_guidance.background import run_sync
from mllm_guidance.backends.mllm import MllmOptions
from mllm_guidance.config import GuidanceConfig, make_config
from mllm_guidance.layout import Layout


@dataclass
class Judgement:
    score: int | None
    reasoning: str
    error: str | None
    run_dir: str


@dataclass
class Alignment:
    layout: Layout | None
    reasoning: str
    error: str | None
    run_dir: str


async def _ask(step_name: str, prompt: str, image: Any, mllm: str | BaseChatModel | None, config: Any, settings: Any,
               run_dir: str | Path | None, mllm_options: Any, extra: dict[str, dict[str, str]] | None = None) -> tuple[Any, str]:
    import asyncio

    from mllm_guidance.nodes.ask import Request, ask
    from mllm_guidance.prompts.steps import STEPS
    from mllm_guidance.prompts.templates import load_templates
    from mllm_guidance.run_settings import make_settings
    from mllm_guidance.spec import build_backends, build_context, default_run_dir
    from mllm_guidance.store import RunStore

    cfg: GuidanceConfig = make_config(config)
    how = make_settings(settings)
    backends = await asyncio.to_thread(build_backends, mllm, "sketch", mllm_options=mllm_options)
    store = RunStore(run_dir or default_run_dir(prompt))
    ref = await asyncio.to_thread(store.save_image, image, "image.png")
    ctx = build_context(backends, store, load_templates(how.templates_dir), cfg, how)
    picture = await asyncio.to_thread(store.image_for_model, ref, how.mllm_image_side, how.mllm_image_format)
    messages = ctx.templates.messages(step_name, prompt, image=picture, mode=cfg.mode, extra=extra)
    answer = await ask(ctx, cfg, STEPS[step_name], Request(round=1, messages=messages, image=ref))
    return answer, str(store.root)


async def ajudge(prompt: str, image: Any, mllm: str | BaseChatModel | None = None, *, config: Any = None,
                 settings: Any = None, run_dir: str | Path | None = None,
                 mllm_options: MllmOptions | dict[str, Any] | None = None) -> Judgement:
    """How well ``image`` (a PIL image) shows ``prompt``: the reason step's score (1-5) and reasoning."""
    answer, where = await _ask("reason", prompt, image, mllm, config, settings, run_dir, mllm_options)
    return Judgement(score=answer.value, reasoning=answer.reasoning, error=answer.error, run_dir=where)


async def aalign(prompt: str, image: Any, layout: Layout | None = None, mllm: str | BaseChatModel | None = None, *,
                 config: Any = None, settings: Any = None, run_dir: str | Path | None = None,
                 mllm_options: MllmOptions | dict[str, Any] | None = None) -> Alignment:
    """A layout that would make ``image`` show ``prompt`` (the align step); ``layout`` is the one the
    image was drawn from, sent as the step's layout block."""
    extra = {"layout": {"objects": layout.to_lines()}} if layout is not None and not layout.is_empty else None
    answer, where = await _ask("align", prompt, image, mllm, config, settings, run_dir, mllm_options, extra)
    return Alignment(layout=answer.value, reasoning=answer.reasoning, error=answer.error, run_dir=where)


def judge(prompt: str, image: Any, mllm: str | BaseChatModel | None = None, **kwargs: Any) -> Judgement:
    """``ajudge`` for synchronous code."""
    return run_sync(ajudge(prompt, image, mllm, **kwargs))


def align(prompt: str, image: Any, layout: Layout | None = None, mllm: str | BaseChatModel | None = None,
          **kwargs: Any) -> Alignment:
    """``aalign`` for synchronous code."""
    return run_sync(aalign(prompt, image, layout, mllm, **kwargs))
