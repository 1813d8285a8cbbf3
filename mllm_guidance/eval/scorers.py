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
- ``text-rendering``: OneIG-Bench's text axis, the prompt's quoted text read back by OCR
  (``eval.text_rendering``).
- ``vqascore``: VQAScore, P("Yes") to 'Does this figure show "{prompt}"?', by CLIP-FlanT5 (the
  published model), a local VLM or an API with log-probabilities (``eval.vqascore``).
- ``geneval``: GenEval's object / count / colour / position checks (Mask2Former and CLIP through
  transformers; ``eval.geneval``).
- ``layout-adherence``: an open-vocabulary detector's IoU of each planned object with its box, and
  per round whether the plan or the render failed (``eval.layout_adherence``).
- ``dpg-bench``: DPG-Bench's dependency-aware yes/no questions, answered by mPLUG-large (the
  reference, through ModelScope) or BLIP VQA (``eval.dpg_bench``).

Every scorer can also rank one image alone (``verifier_score``: candidate search's verifier).

A record keeps, per scorer, the settings that produced its numbers and per-image details
(questions, caption, judge answers); a rerun scores again only what is missing or was produced
with other settings. A judge's scale is applied to its stored answers, so changing the scale
never asks the model again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from mllm_guidance.errors import InputError


@dataclass(frozen=True)
class ScoreItem:
    prompt: str
    image: Any  # PIL image
    category: str | None = None  # the judge category (None: the judge's default, complex)
    layout: Any = None  # the layout the image was rendered from (a Layout, its JSON, or (name, box) pairs)
    run: dict[str, Any] | None = None  # the run's run.json, for scorers that look at every round
    run_dir: Path | None = None  # where the run's round images are


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


SCORERS = ("mllm", "mllm-reason", "clipscore", "blip-vqa", "blip-clip", "text-rendering", "layout-adherence", "vqascore", "geneval",
           "dpg-bench")
KEYS = {"mllm": ("mllm", "mllm_raw"), "mllm-reason": ("mllm_reason", "mllm_reason_raw"),
        "clipscore": ("clipscore", "clipscore_cos"), "blip-vqa": ("blip_vqa",), "blip-clip": ("blip_clip",),
        "text-rendering": ("text_word_accuracy", "text_ned", "text_edit_distance", "text_exact"),
        "layout-adherence": ("layout_recall", "layout_miou"), "vqascore": ("vqascore",), "geneval": ("geneval",),
        "dpg-bench": ("dpg",)}


class ScorerOptions(BaseModel):
    """Every scorer's options, with the references' defaults (the bench flags are made from these)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    judge: Any = Field(default="openai:gpt-4o", description="The MLLM of the mllm / mllm-reason scorers: its own model, not the guide's.")
    judge_protocol: Literal["gpt4v", "gpt4v-as-run", "cot"] = Field(
        default="gpt4v", description="T2I-CompBench prompt: gpt4v (per category, one turn), gpt4v-as-run (their script's "
                                     "spatial prompt for every category), cot (describe, then score).")
    judge_category: Literal["spatial", "3d-spatial", "non-spatial", "complex", "numeracy"] | None = Field(
        default=None, description="The judge's T2I-CompBench category (default: the dataset's; rls300 and files: complex).")
    judge_repeats: int = Field(default=1, ge=1, le=20, description="Ask the judge N times per image and average.")
    judge_scale: Literal["raw", "s/5", "(s-1)/4", "pass@5"] = Field(
        default="s/5", description="How 1..5 judge scores are reported; pass@5 is the share scored 5.")
    judge_temperature: float | None = Field(default=0.0, ge=0, le=2, description="Judge sampling temperature (unset: the provider's default).")
    judge_options: dict[str, Any] = Field(default={}, description="MllmOptions of the judge: base_url, timeout, retries.")
    judge_concurrency: int = Field(default=8, ge=1, description="Judge calls in flight at once.")
    clip_model: str = Field(default="openai/clip-vit-base-patch32", description="CLIP of clipscore (T2I-CompBench and Hessel: ViT-B/32).")
    clip_complex_rule: bool = Field(default=False, description="clipscore_cos without adjectives (T2I-CompBench's complex-category rule; needs spaCy's en_core_web_sm).")
    blip_vqa_model: str = Field(default="Salesforce/blip-vqa-capfilt-large", description="BLIP VQA weights.")
    blip_vqa_questions: Literal["auto", "spacy", "rules"] = Field(
        default="auto", description="Noun chunks from spaCy's en_core_web_sm (the reference) or the rule-based splitter; auto: spaCy when installed.")
    require_spacy: bool = Field(default=False, description="Refuse BLIP-VQA's rule-based question fallback: fail unless spaCy's en_core_web_sm is installed.")
    blip_vqa_image_size: int = Field(default=480, ge=32, le=2048, description="BLIP-VQA input size (the reference's 480).")
    blip_clip_recipe: Literal["attend-and-excite", "blip2"] = Field(
        default="attend-and-excite", description="attend-and-excite (BLIP base captions, CLIP ViT-B/16, templates) or blip2 (the thesis's BLIP-2 captioner).")
    blip_clip_captioner: str | None = Field(default=None, description="Captioner weights (default: the recipe's).")
    blip_clip_clip_model: str = Field(default="openai/clip-vit-base-patch16", description="CLIP of blip-clip.")
    vqascore_model: str = Field(default="clip-flant5-xxl", description="vqascore: clip-flant5-xxl / clip-flant5-xl (the published "
                                "model), clip-flant5:MODEL_DIR,TOKENIZER_DIR, transformers:ID (a local VLM), or openai:MODEL (API logprobs).")
    vqascore_base_url: str | None = Field(default=None, description="vqascore with openai:MODEL: an OpenAI-compatible server (vLLM, llama.cpp).")
    geneval_detector: str = Field(default="facebook/mask2former-swin-small-coco-instance", description="geneval: the COCO Mask2Former.")
    geneval_clip_model: str = Field(default="openai/clip-vit-large-patch14", description="geneval: the CLIP of its colour check (ViT-L/14).")
    detector: str = Field(default="google/owlv2-base-patch16-ensemble", description="layout-adherence: the open-vocabulary detector (OWLv2 or OWL-ViT).")
    detector_threshold: float = Field(default=0.1, ge=0, le=1, description="layout-adherence: detections scoring less are ignored.")
    dpg_questions: str = Field(default="https://raw.githubusercontent.com/TencentQQGYLab/ELLA/3c228f1dc6c4d3cad0a47493816151a419f14db3/dpg_bench/dpg_bench.csv",
                               description="dpg-bench: the question file (dpg_bench.csv): a path, or the URL it is "
                                           "downloaded from once (ELLA's repository at the reference's commit).")
    dpg_vqa: str = Field(default="mplug", description="dpg-bench: the VQA model: mplug (the reference's mPLUG-large, "
                         "through ModelScope) or blip[:MODEL] (BLIP VQA through transformers; not the leaderboard's numbers).")
    dpg_skip_first_row: bool = Field(default=True, description="dpg-bench: skip the question file's first row, as the "
                                     "reference's loop does (its first question is never asked).")
    ocr_min_confidence: float = Field(default=0.5, ge=0, le=1, description="text-rendering: OCR lines read with less confidence are dropped (RapidOCR's 0.5).")
    device: str | None = Field(default=None, description="Device of the CLIP / BLIP scorers: cuda, mps, cpu (default: automatic).")


def build_scorers(names: Sequence[str], options: ScorerOptions | None = None, **overrides: Any) -> list[Any]:
    """Scorers by name; ``overrides`` are ``ScorerOptions`` fields. Unknown names fail before any
    model loads."""
    unknown_options = set(overrides) - set(ScorerOptions.model_fields)
    if unknown_options:
        raise InputError(f"unknown scorer option(s) {', '.join(sorted(unknown_options))}")
    try:
        o = ScorerOptions(**{**(options.model_dump() if options else {}), **overrides})
    except ValueError as exc:
        raise InputError(f"invalid scorer options: {exc}") from None
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

            if o.require_spacy and o.blip_vqa_questions == "rules":
                raise InputError("--require-spacy and --blip-vqa-questions rules contradict each other; drop one")
            questions = "spacy" if o.require_spacy else o.blip_vqa_questions
            scorer = BlipVqaScorer(o.blip_vqa_model, image_size=o.blip_vqa_image_size, questions=questions, device=o.device)
        elif name == "text-rendering":
            from mllm_guidance.eval.text_rendering import TextRenderingScorer

            scorer = TextRenderingScorer(min_confidence=o.ocr_min_confidence)
        elif name == "vqascore":
            from mllm_guidance.eval.vqascore import VqaScorer

            scorer = VqaScorer(o.vqascore_model, base_url=o.vqascore_base_url, device=o.device,
                               concurrency=o.judge_concurrency, timeout=float(o.judge_options.get("timeout", 120.0)))
        elif name == "geneval":
            from mllm_guidance.eval.geneval import GenEvalScorer

            scorer = GenEvalScorer(o.geneval_detector, clip_model=o.geneval_clip_model, device=o.device)
        elif name == "dpg-bench":
            from mllm_guidance.eval.dpg_bench import DpgBenchScorer

            scorer = DpgBenchScorer(o.dpg_questions, vqa=o.dpg_vqa, skip_first_row=o.dpg_skip_first_row, device=o.device)
        elif name == "layout-adherence":
            from mllm_guidance.eval.layout_adherence import LayoutAdherenceScorer

            scorer = LayoutAdherenceScorer(o.detector, threshold=o.detector_threshold, device=o.device)
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
    for scorer in scorers:
        keys = getattr(scorer, "keys", KEYS.get(scorer.name, (scorer.name,)))
        settings = getattr(scorer, "settings", {})
        todo = []
        for r in (r for r in records if r.get("status") == "ok"):
            done = (r.get("scoring") or {}).get(scorer.name)
            same = done is not None and done.get("settings") == settings
            if same and hasattr(scorer, "metrics_of"):
                _store(r, scorer.name, keys, scorer.metrics_of(done), None)  # the same answers, maybe another scale
            elif not (same and (keys[0] in (r.get("metrics") or {}) or done.get("not_applicable"))):
                todo.append(r)
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            items = [_item(Path(out), r, getattr(scorer, "needs_run", False)) for r in chunk]
            if hasattr(scorer, "score_items"):
                results = scorer.score_items(items)
            else:
                results = [(values, {}) for values in scorer.score(items)]
            for record, (values, details) in zip(chunk, results, strict=True):
                _store(record, scorer.name, keys, values, {"settings": settings, **details})
    return records


def _item(out: Path, record: dict[str, Any], needs_run: bool) -> ScoreItem:
    """A record's image (and, for scorers that need it, its run.json and final layout) to score."""
    from PIL import Image

    image = Image.open(out / record["image"]).convert("RGB")
    if not needs_run:
        return ScoreItem(record["prompt"], image, item_category(record))
    run_dir = out / str(record.get("run_dir") or "")
    run = _read_run(run_dir)
    best = run.get("best_round")
    rounds = run.get("rounds") or []
    layout = rounds[best].get("layout") if isinstance(best, int) and 0 <= best < len(rounds) else None
    return ScoreItem(record["prompt"], image, item_category(record), layout=layout, run=run, run_dir=run_dir)


def _read_run(run_dir: Path) -> dict[str, Any]:
    import json

    path = run_dir / "run.json"
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the run's record ({exc}); this scorer needs the bench's runs/ directory") from None
    if not isinstance(run, dict):
        raise InputError(f"{path}: not a run record")
    return run


#: The number each scorer ranks an image by, as a verifier (higher is better).
PRIMARY = {"mllm": "mllm", "mllm-reason": "mllm_reason", "clipscore": "clipscore", "blip-vqa": "blip_vqa",
           "blip-clip": "blip_clip", "text-rendering": "text_word_accuracy", "layout-adherence": "layout_miou", "vqascore": "vqascore", "geneval": "geneval",
           "dpg-bench": "dpg"}


def verifier_score(scorer: Any, prompt: str, image: Any, layout: Any = None) -> float | None:
    """One image's primary number under a built scorer (``build_scorers``): how candidate search
    ranks candidates. None when the scorer does not apply (no quoted text, no layout) or could not
    score (a judge's unreadable answer)."""
    item = ScoreItem(prompt, image, layout=layout)
    if hasattr(scorer, "score_items"):
        values, _ = scorer.score_items([item])[0]
    else:
        values = scorer.score([item])[0]
    return values.get(PRIMARY.get(scorer.name, scorer.keys[0]))


def _store(record: dict[str, Any], name: str, keys: Sequence[str], values: dict[str, float], scoring: dict[str, Any] | None) -> None:
    metrics = record.setdefault("metrics", {})
    for key in keys:
        metrics.pop(key, None)  # a judge that could not score leaves no stale number behind
    metrics.update(values)
    if scoring is not None:
        record.setdefault("scoring", {})[name] = scoring
