"""What a run is: its ``RunSpec`` (written as ``spec.json`` before the first step), the backends it
runs on (``build_backends``) and the ``Context`` the graph gets (``build_context``).

``run.py`` carries runs out; this module only describes and builds them, so the evidence writers
(``evidence/record.py``) and the servers read specs without importing the execution layer.

Two kinds of options, each with one meaning:

- MLLM options (``backends.mllm_options.MllmOptions``): how a spec string becomes a chat model
  (server, timeout, retries, rate budget, device);
- generator options: the generator's constructor keywords (``model``, ``device``, ``dtype``,
  ``cpu_offload``, ``attention_slicing`` and the backend's own, such as GLIGEN's ``beta``),
  fixed when it is built and recorded, so ``resume`` rebuilds the same generator.
"""

from __future__ import annotations

import datetime as dt
import functools
import platform
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from mllm_guidance.backends.mllm_options import MllmOptions
from mllm_guidance.config import GuidanceConfig, make_config
from mllm_guidance.context import Context
from mllm_guidance.errors import InputError
from mllm_guidance.run_settings import RunSettings, split_recorded

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from mllm_guidance.backends.generator import Generator
    from mllm_guidance.prompts.templates import TemplateSet
    from mllm_guidance.store import RunStore

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
    settings: dict[str, Any] = Field(default={}, description="RunSettings fields (prompts, MLLM transport, prices).")
    mllm: ModelSetting | None = Field(description="None for plain runs, which never ask an MLLM.")
    generator: ModelSetting
    thread_id: str
    created: str
    template_set: str
    versions: dict[str, str] = {}

    def guidance_config(self, is_good: Callable[[int, str], bool] | None = None) -> GuidanceConfig:
        """The config back; a run made with a callable is_good needs it given again."""
        settings, _ = split_recorded(self.config, self.settings)
        if str(settings.get("is_good", "")).startswith("callable:"):
            if is_good is None:
                raise InputError(f"this run used is_good={settings['is_good']}; pass the same is_good to resume it")
            settings["is_good"] = is_good
        elif is_good is not None:
            settings["is_good"] = is_good
        return make_config(settings)

    def run_settings(self) -> RunSettings:
        """The run's settings back (a spec written before they left the config keeps them there)."""
        return split_recorded(self.config, self.settings)[1]

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
    from mllm_guidance.backends.mllm import default_mllm_spec, describe_mllm, model_name, resolve_mllm
    from mllm_guidance.backends.registry import create_generator, default_generator_spec

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


def new_spec(prompt: str, cfg: GuidanceConfig, settings: RunSettings, backends: Backends, templates: TemplateSet,
             thread_id: str | None = None) -> RunSpec:
    """The spec of a new run: its seed drawn (and recorded) when the config leaves it open."""
    import random

    return RunSpec(
        prompt=prompt, seed=cfg.seed if cfg.seed is not None else random.randrange(2**31),
        config=cfg.describe(), settings=settings.describe(), mllm=backends.mllm_setting, generator=backends.generator_setting,
        thread_id=thread_id or uuid.uuid4().hex, created=_now(), template_set=templates.version,
        versions=dict(package_versions()),
    )


def build_context(backends: Backends, store: RunStore, templates: TemplateSet, config: GuidanceConfig,
                  settings: RunSettings) -> Context:
    """What the graph's nodes get: the built backends, the run directory, the prompts, the knobs
    and how to ask."""
    return Context(mllm=backends.mllm, generator=backends.generator, store=store, templates=templates, config=config,
                   settings=settings)


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """The versions a run records (spec.json, run.json)."""
    out = {"python": platform.python_version()}
    for dist in ("mllm-guidance", "langgraph", "langchain-core", "pydantic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def default_run_dir(prompt: str) -> Path:
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


