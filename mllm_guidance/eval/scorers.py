"""The benchmark's scorers by name, and scoring a run's records (idempotent, resumable).

Each scorer names the reference it reproduces, in its module docstring, in the record (its
``settings``) and in the summary's column header:

- ``mllm``: T2I-CompBench's MLLM evaluation, the thesis's judge (``eval.judge``; default
  ``openai:gpt-4o`` at temperature 0, its own model, not the guide's).
- ``mllm-reason``: the guide's reason rubric as a judge (``eval.judge``).
- ``clipscore``: T2I-CompBench's CLIP cosine and Hessel et al.'s CLIPScore (``eval.clipscore``).
- ``blip-vqa``: T2I-CompBench's disentangled BLIP-VQA (``eval.blip``).
- ``blip-clip``: Attend-and-Excite's BLIP caption + CLIP similarity, or with the thesis's BLIP-2
  captioner (``eval.blip``).

A record keeps, per scorer, the settings that produced its numbers and per-image details
(questions, caption, judge answers); a rerun scores again only what is missing or was produced
with other settings. A judge's scale is applied to its stored answers, so changing the scale
never asks the model again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from mllm_guidance.errors import InputError


@dataclass(frozen=True)
class ScoreItem:
    prompt: str
    image: Any  # PIL image
    category: str | None = None  # the judge category (None: the judge's default, complex)


class Scorer(Protocol):
    name: str
    keys: tuple[str, ...]  # the metric keys it writes

    @property
    def settings(self) -> dict[str, Any]:
        """The reference and options that produced its numbers (recorded per image)."""
        ...

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        """One dict of metric values per item, in order."""
        ...


SCORERS = ("mllm", "mllm-reason", "clipscore", "blip-vqa", "blip-clip")
KEYS = {"mllm": ("mllm", "mllm_raw"), "mllm-reason": ("mllm_reason", "mllm_reason_raw"),
        "clipscore": ("clipscore", "clipscore_cos"), "blip-vqa": ("blip_vqa",), "blip-clip": ("blip_clip",)}


@dataclass
class ScorerOptions:
    """Every scorer's options, with the references' defaults."""

    judge: Any = "openai:gpt-4o"
    judge_protocol: str = "gpt4v"
    judge_category: str | None = None
    judge_repeats: int = 1
    judge_scale: str = "s/5"
    judge_temperature: float | None = 0.0
    judge_options: dict[str, Any] = field(default_factory=dict)  # resolve_mllm options: base_url, timeout
    judge_concurrency: int = 8
    clip_model: str = "openai/clip-vit-base-patch32"
    clip_complex_rule: bool = False
    blip_vqa_model: str = "Salesforce/blip-vqa-capfilt-large"
    blip_vqa_questions: str = "auto"
    blip_vqa_image_size: int = 480
    blip_clip_recipe: str = "attend-and-excite"
    blip_clip_captioner: str | None = None
    blip_clip_clip_model: str = "openai/clip-vit-base-patch16"
    device: str | None = None


def build_scorers(names: Sequence[str], options: ScorerOptions | None = None, **overrides: Any) -> list[Any]:
    """Scorers by name; ``overrides`` are ``ScorerOptions`` fields. Unknown names fail before any
    model loads."""
    known = {f.name for f in fields(ScorerOptions)}
    unknown_options = set(overrides) - known
    if unknown_options:
        raise InputError(f"unknown scorer option(s) {', '.join(sorted(unknown_options))}")
    o = ScorerOptions(**{**(options.__dict__ if options else {}), **overrides})
    for name in names:
        if name not in SCORERS:
            raise InputError(f"unknown scorer {name!r}; available: {', '.join(SCORERS)}")
    judge = {"repeats": o.judge_repeats, "scale": o.judge_scale, "temperature": o.judge_temperature,
             "mllm_options": o.judge_options, "concurrency": o.judge_concurrency}
    built: list[Any] = []
    for name in names:
        if name == "mllm":
            from mllm_guidance.eval.judge import CompBenchJudge

            scorer: Any = CompBenchJudge(o.judge, protocol=o.judge_protocol, category=o.judge_category, **judge)
        elif name == "mllm-reason":
            from mllm_guidance.eval.judge import ReasonJudge

            scorer = ReasonJudge(o.judge, **judge)
        elif name == "clipscore":
            from mllm_guidance.eval.clipscore import ClipScorer

            scorer = ClipScorer(o.clip_model, complex_rule=o.clip_complex_rule, device=o.device)
        elif name == "blip-vqa":
            from mllm_guidance.eval.blip import BlipVqaScorer

            scorer = BlipVqaScorer(o.blip_vqa_model, image_size=o.blip_vqa_image_size, questions=o.blip_vqa_questions, device=o.device)
        else:
            from mllm_guidance.eval.blip import BlipClipScorer

            scorer = BlipClipScorer(o.blip_clip_captioner, recipe=o.blip_clip_recipe, clip_model=o.blip_clip_clip_model, device=o.device)
        scorer.keys = KEYS[name]
        built.append(scorer)
    return built


def item_category(record: dict[str, Any]) -> str | None:
    """The judge category pinned by the runner, else that of a built-in dataset's name."""
    from mllm_guidance.eval.datasets import dataset_category

    if "category" in record:
        return record["category"]
    return dataset_category(str(record.get("dataset") or ""))


def score_records(out: Any, records: list[dict[str, Any]], scorers: Sequence[Any], batch: int = 32) -> list[dict[str, Any]]:
    """Add every scorer's metrics to the ok records that lack them or have them from other
    settings; a judge's stored answers are only re-scaled."""
    from PIL import Image

    for scorer in scorers:
        keys = getattr(scorer, "keys", KEYS.get(scorer.name, (scorer.name,)))
        settings = getattr(scorer, "settings", {})
        todo = []
        for r in (r for r in records if r.get("status") == "ok"):
            done = (r.get("scoring") or {}).get(scorer.name)
            same = done is not None and done.get("settings") == settings
            if same and hasattr(scorer, "metrics_of"):
                _store(r, scorer.name, keys, scorer.metrics_of(done), None)  # the same answers, maybe another scale
            elif not (same and keys[0] in (r.get("metrics") or {})):
                todo.append(r)
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            items = [ScoreItem(r["prompt"], Image.open(Path(out) / r["image"]).convert("RGB"), item_category(r)) for r in chunk]
            if hasattr(scorer, "score_items"):
                results = scorer.score_items(items)
            else:
                results = [(values, {}) for values in scorer.score(items)]
            for record, (values, details) in zip(chunk, results, strict=True):
                _store(record, scorer.name, keys, values, {"settings": settings, **details})
    return records


def _store(record: dict[str, Any], name: str, keys: Sequence[str], values: dict[str, float], scoring: dict[str, Any] | None) -> None:
    metrics = record.setdefault("metrics", {})
    for key in keys:
        metrics.pop(key, None)  # a judge that could not score leaves no stale number behind
    metrics.update(values)
    if scoring is not None:
        record.setdefault("scoring", {})[name] = scoring
