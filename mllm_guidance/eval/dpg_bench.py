"""DPG-Bench (Hu et al. 2024, with ELLA): dense prompts, each checked by yes/no questions whose
dependency graph zeroes a question when a question it depends on was answered no.

Reference: TencentQQGYLab/ELLA ``dpg_bench/compute_dpg_bench.py`` @ 3c228f1dc6c4 (2024-07-17), with
its question file ``dpg_bench/dpg_bench.csv`` from the same commit. What it does, and what we keep:

- **Questions** (``prepare_dpg_data``): one row per question (``item_id``, ``proposition_id``,
  ``dependency`` as comma-separated parent ids, 0 for none, ``tuple`` whose text before ``(`` is the
  category, ``question_natural_language``). Its loop skips ``i == 0`` after pandas has already read
  the header, so the first question of the first prompt is never asked; kept (``skip_first_row``,
  recorded), since the published numbers were made that way.
- **One image** (``compute_dpg_one_sample``): the VQA model answers every question; a question
  scores 1 when the answer is exactly ``yes``; then each question with a parent scored 0 is zeroed;
  the image's score is the mean over its questions. The reference scores a 2 x 2 grid of the
  prompt's four images as four crops and averages them; bench keeps the four images apart, and the
  prompt's score is the same mean (``dpg_table``).
- **Categories**: the reference tallies, per question, the score *before* zeroing, and only from the
  last crop of each grid (its ``qid2scores_orig`` is overwritten per crop); ``dpg_table`` does the
  same with the last image of each prompt. L1 is the category's text before ``-``.
- **Table**: the mean image score x 100 ("DPG-Bench score"), and each L1 category's mean x 100.
- **VQA model**: mPLUG-large (``damo/mplug_visual-question-answering_coco_large_en``) through
  ModelScope's pipeline, as the reference (``--dpg-vqa mplug``; needs ``pip install modelscope`` and
  the multi-modal stack ELLA's ``requirements-for-dpg_bench.txt`` lists: fairseq, decord, ...; the
  reference's ``accelerate launch --mixed_precision fp16`` wraps the pipeline's module but its
  ``vqa`` call runs outside ``forward``, so the answers come from the pipeline's own precision). ``--dpg-vqa blip:MODEL`` answers with
  BLIP VQA through transformers (greedy generation) instead: the protocol and table are the same, the
  numbers are not the leaderboard's (another VQA model), and the table says which model answered.
"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_guidance.errors import BackendError, InputError

REFERENCE = "DPG-Bench (TencentQQGYLab/ELLA dpg_bench/compute_dpg_bench.py @ 3c228f1dc6c4)"
COMMIT = "3c228f1dc6c4d3cad0a47493816151a419f14db3"
QUESTIONS_URL = f"https://raw.githubusercontent.com/TencentQQGYLab/ELLA/{COMMIT}/dpg_bench/dpg_bench.csv"
MPLUG = "damo/mplug_visual-question-answering_coco_large_en"
DEFAULT_BLIP = "Salesforce/blip-vqa-capfilt-large"
COLUMNS = ("item_id", "proposition_id", "dependency", "tuple", "question_natural_language")


@dataclass(frozen=True)
class Question:
    qid: int
    text: str
    category: str  # the tuple's text before "(", e.g. "entity - whole"
    parents: tuple[int, ...]


@dataclass
class QuestionSet:
    """The questions of every prompt, by the prompt's id."""

    by_item: dict[str, dict[int, Question]] = field(default_factory=dict)
    source: str = ""
    sha256: str = ""


def read_questions(text: str, *, skip_first_row: bool = True, source: str = "") -> QuestionSet:
    """The question file, read as the reference reads it (``skip_first_row``: its ``i == 0`` skip)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if not rows or missing:
        raise InputError(f"{source or 'the DPG-Bench question file'}: not DPG-Bench's dpg_bench.csv "
                         f"(missing {', '.join(missing) or 'rows'})")
    out = QuestionSet(source=source, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())
    for i, row in enumerate(rows):
        if i == 0 and skip_first_row:
            continue
        try:
            qid = int(row["proposition_id"])
            parents = tuple(int(d.strip()) for d in str(row["dependency"]).split(","))
        except ValueError:
            raise InputError(f"{source}: row {i + 2} has a proposition_id or dependency that is not a number") from None
        category = str(row["tuple"]).split("(")[0].strip()
        out.by_item.setdefault(str(row["item_id"]), {})[qid] = Question(qid, row["question_natural_language"], category, parents)
    return out


def score_answers(questions: dict[int, Question], answers: dict[int, str]) -> tuple[float, dict[int, float]]:
    """(the image's score, each question's score before the dependency rule), as the reference."""
    raw = {qid: float(answers[qid] == "yes") for qid in questions}
    scores = dict(raw)
    for qid, question in questions.items():
        if any(parent != 0 and scores.get(parent) == 0 for parent in question.parents):
            scores[qid] = 0.0
    return sum(scores.values()) / len(scores), raw


_CACHE: dict[str, QuestionSet] = {}
_LOCK = threading.Lock()


def load_questions(where: str, *, skip_first_row: bool = True, cache_dir: Path | None = None) -> QuestionSet:
    """The question file from a path or an http(s) URL (downloaded once into ``cache_dir``,
    default ``~/.cache/mllm-guidance/dpg-bench``), read once per process."""
    key = f"{where}|{skip_first_row}"
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    if where.startswith(("http://", "https://")):
        text = _download(where, cache_dir or Path.home() / ".cache" / "mllm-guidance" / "dpg-bench")
    else:
        from mllm_guidance.textfiles import read_user_text

        text = read_user_text(Path(where), "DPG-Bench question file")
    questions = read_questions(text, skip_first_row=skip_first_row, source=where)
    with _LOCK:
        _CACHE[key] = questions
    return questions


def _download(url: str, cache_dir: Path) -> str:
    import httpx

    target = cache_dir / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".csv")
    if target.is_file():
        return target.read_text(encoding="utf-8")
    try:
        response = httpx.get(url, timeout=60, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise BackendError(f"cannot download DPG-Bench's questions from {url} ({exc}); download dpg_bench.csv "
                           f"from TencentQQGYLab/ELLA at {COMMIT[:12]} and give --dpg-questions PATH") from None
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_text(response.text, encoding="utf-8")
    partial.replace(target)
    return response.text


class MplugAnswerer:
    """The reference's VQA model: mPLUG-large through ModelScope's pipeline (its ``MPLUG`` class)."""

    def __init__(self, model: str = MPLUG, device: str | None = None) -> None:
        try:
            from modelscope.pipelines import pipeline
            from modelscope.utils.constant import Tasks
        except ImportError as exc:
            raise BackendError(f"--dpg-vqa mplug (the reference's VQA) needs ModelScope and its multi-modal stack: pip "
                               "install modelscope and what TencentQQGYLab/ELLA's requirements-for-dpg_bench.txt lists "
                               f"({exc}); or answer with BLIP through transformers: --dpg-vqa blip") from None
        self.model = model
        self.pipe = pipeline(Tasks.visual_question_answering, model=model, device=device or "gpu")

    def answer(self, images: Sequence[Any], questions: Sequence[str]) -> list[str]:
        return [self.pipe({"image": image, "question": question})["text"] for image, question in zip(images, questions, strict=True)]


class BlipAnswerer:
    """BLIP VQA through transformers, answering by greedy generation (lower-cased, stripped)."""

    def __init__(self, model: str = DEFAULT_BLIP, device: str | None = None, batch_size: int = 16) -> None:
        from mllm_guidance.eval.models import load_scoring_model

        self.model_id, self.batch_size = model, batch_size
        self.net, self.processor, self.device = load_scoring_model("BLIP", model, device, "BlipForQuestionAnswering",
                                                                   "BlipProcessor")

    def answer(self, images: Sequence[Any], questions: Sequence[str]) -> list[str]:
        import torch

        out: list[str] = []
        for start in range(0, len(questions), self.batch_size):
            chunk_images = [im.convert("RGB") for im in images[start : start + self.batch_size]]
            chunk = list(questions[start : start + self.batch_size])
            inputs = self.processor(images=chunk_images, text=chunk, return_tensors="pt", padding=True).to(self.device)
            with torch.inference_mode():
                ids = self.net.generate(**inputs, max_new_tokens=10)
            out += [t.strip().lower() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return out


def make_answerer(spec: str, device: str | None) -> Any:
    """``mplug`` (the reference), ``mplug:MODEL``, ``blip`` or ``blip:MODEL``."""
    kind, _, model = spec.partition(":")
    if kind == "mplug":
        return MplugAnswerer(model or MPLUG, device)
    if kind == "blip":
        return BlipAnswerer(model or DEFAULT_BLIP, device)
    raise InputError(f"--dpg-vqa {spec!r}: choose mplug (the reference, through ModelScope) or blip[:MODEL]")


class DpgBenchScorer:
    """DPG-Bench's score of each image; prompts outside DPG-Bench are not applicable."""

    name = "dpg-bench"
    reference = REFERENCE

    def __init__(self, questions: str = QUESTIONS_URL, *, vqa: str = "mplug", skip_first_row: bool = True,
                 device: str | None = None) -> None:
        from mllm_guidance.eval.datasets import load_dataset

        self.questions = load_questions(questions, skip_first_row=skip_first_row)
        self.vqa_spec, self.skip_first_row = vqa, skip_first_row
        self.answerer = make_answerer(vqa, device)
        self.ids = {p.text: p.id for p in load_dataset("dpg-bench")[1]}

    @property
    def settings(self) -> dict[str, Any]:
        model = getattr(self.answerer, "model", None) or getattr(self.answerer, "model_id", None)
        return {"reference": self.reference, "vqa": self.vqa_spec, "vqa_model": model,
                "questions_sha256": self.questions.sha256, "skip_first_row": self.skip_first_row,
                "leaderboard_vqa": isinstance(self.answerer, MplugAnswerer)}

    def score(self, items: Sequence[Any]) -> list[dict[str, float]]:
        return [metrics for metrics, _ in self.score_items(items)]

    def score_items(self, items: Sequence[Any]) -> list[tuple[dict[str, float], dict[str, Any]]]:
        asked: list[tuple[int, Question]] = []
        sets: list[dict[int, Question] | None] = []
        for i, item in enumerate(items):
            item_id = self.ids.get(item.prompt.strip())
            questions = self.questions.by_item.get(item_id or "")
            sets.append(questions or None)
            asked += [(i, q) for q in (questions or {}).values()]
        answers = self.answerer.answer([items[i].image for i, _ in asked], [q.text for _, q in asked])
        by_item: list[dict[int, str]] = [{} for _ in items]
        for (i, q), answer in zip(asked, answers, strict=True):
            by_item[i][q.qid] = answer
        out: list[tuple[dict[str, float], dict[str, Any]]] = []
        for item, questions, given in zip(items, sets, by_item, strict=True):
            if questions is None:
                out.append(({}, {"not_applicable": "not a DPG-Bench prompt (or its questions are missing)"}))
                continue
            score, raw = score_answers(questions, given)
            out.append(({"dpg": score}, {"item_id": self.ids[item.prompt.strip()], "answers": {str(k): v for k, v in given.items()},
                                         "categories": {str(q.qid): q.category for q in questions.values()},
                                         "raw": {str(k): v for k, v in raw.items()}}))
        return out


def dpg_table(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """DPG-Bench's numbers as its script prints them: the score (mean image score x 100) and each L1
    category (x 100, from the pre-dependency answers of each prompt's last image, as the reference)."""
    scored = [r for r in records if r.get("status") == "ok" and "dpg" in (r.get("metrics") or {})]
    if not scored:
        return None
    last: dict[str, dict[str, Any]] = {}
    for r in scored:
        key = str(r.get("prompt_id") or r.get("prompt"))
        if key not in last or int(r.get("image_index") or 0) >= int(last[key].get("image_index") or 0):
            last[key] = r
    by_l1: dict[str, list[float]] = {}
    for r in last.values():
        details = (r.get("scoring") or {}).get("dpg-bench") or {}
        for qid, value in (details.get("raw") or {}).items():
            l1 = str((details.get("categories") or {}).get(qid, "other")).split("-")[0].strip()
            by_l1.setdefault(l1, []).append(float(value))
    row: dict[str, Any] = {"Overall": round(100 * sum(r["metrics"]["dpg"] for r in scored) / len(scored), 2)}
    for l1 in ("global", "entity", "attribute", "relation", "other"):
        values = by_l1.pop(l1, None)
        row[l1.title()] = round(100 * sum(values) / len(values), 2) if values else None
    for l1, values in sorted(by_l1.items()):
        row[l1.title()] = round(100 * sum(values) / len(values), 2)
    settings = ((scored[0].get("scoring") or {}).get("dpg-bench") or {}).get("settings") or {}
    row["vqa"] = settings.get("vqa_model")
    row["images"] = len(scored)
    return row
