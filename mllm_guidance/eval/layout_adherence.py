"""Layout adherence: did the render put each planned object in its box? And per round, did the plan or the render fail?

An open-vocabulary detector (OWLv2 through transformers, default
``google/owlv2-base-patch16-ensemble``; OWL-ViT checkpoints load through the same code) is asked,
per image, for every planned object's phrase as written in the layout ("a jumping pink dolphin").
Per object: the best IoU between its planned box and the detector's boxes for its phrase scoring at
least ``threshold`` (0.1, the value transformers' zero-shot detection examples use); 0 when there
is none. Per image: ``layout_recall`` (share of objects with IoU >= 0.5) and ``layout_miou``
(mean of the per-object IoUs). A prompt run without a layout (plain mode) is not scored.

Per round of a run (from its ``run.json``), the diagnosis bench records: the objects found in their
boxes, the objects the judge's reasoning calls missing (a rule: a clause of the reasoning that names
the object's head noun together with "missing", "no", "not", "absent", "lacks" or "without"), and
which part failed when the judge did not call the round good: ``render`` when a planned object is
not found in its box (the renderer did not draw the plan), ``plan`` when every planned object is
there (the image follows the plan and the plan was not enough).

Reference: no published loop reports this; it is the box-adherence idea of LayoutSAM-Eval and of
detector-based layout benchmarks (LayoutBench, LMD's evaluation) applied to the planned layout,
with OWLv2 (Minderer et al. 2023; transformers' ``Owlv2ForObjectDetection``) as the detector.
Known limits: one detector's recall bounds the score (small or unusual objects are missed even when
drawn); a phrase with attributes ("a red cube") is matched as a whole by OWLv2's text embedding,
so a wrong colour lowers the detection score without a separate check; Grounding DINO checkpoints
are not supported (their post-processing works on token spans, not one query per phrase).

The scorer is also a verifier for candidate search: ``adherence(image, layout)`` scores one image
against one layout, and ``scorers.verifier_score`` gives any scorer's primary number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllm_guidance.errors import BackendError, InputError
from mllm_guidance.eval.models import load_scoring_model

if TYPE_CHECKING:
    from mllm_guidance.eval.scorers import ScoreItem

DEFAULT_DETECTOR = "google/owlv2-base-patch16-ensemble"
REFERENCE = "layout adherence: OWLv2 open-vocabulary detection of each planned phrase, IoU with its planned box"
#: IoU at which a planned object counts as found in its box.
FOUND_IOU = 0.5
_NEGATION = re.compile(r"\b(missing|absent|no|not|lacks?|lacking|without|none)\b", re.IGNORECASE)
_CLAUSE = re.compile(r"[.;,:!?\n]|\bbut\b", re.IGNORECASE)

Pairs = list[tuple[str, tuple[float, float, float, float]]]


@dataclass(frozen=True)
class Adherence:
    """One image against one layout: per object (name, planned box, best IoU), and the summary."""

    objects: list[tuple[str, tuple[float, float, float, float], float]]

    @property
    def recall(self) -> float:
        return sum(iou >= FOUND_IOU for *_, iou in self.objects) / len(self.objects) if self.objects else 0.0

    @property
    def mean_iou(self) -> float:
        return sum(iou for *_, iou in self.objects) / len(self.objects) if self.objects else 0.0

    @property
    def found(self) -> list[str]:
        return [name for name, _, iou in self.objects if iou >= FOUND_IOU]

    @property
    def missed(self) -> list[str]:
        return [name for name, _, iou in self.objects if iou < FOUND_IOU]


def layout_pairs(layout: Any) -> Pairs | None:
    """(name, box) pairs from a ``Layout``, its JSON form (``{"objects": [...]}``), or pairs; None for no layout."""
    if layout is None:
        return None
    if hasattr(layout, "objects") and not isinstance(layout, dict):
        layout = layout.model_dump(mode="json")
    objects = layout.get("objects", []) if isinstance(layout, dict) else layout
    pairs: Pairs = []
    for obj in objects:
        name, box = (obj["name"], obj["box"]) if isinstance(obj, dict) else obj
        if isinstance(box, dict):
            box = (box["x1"], box["y1"], box["x2"], box["y2"])
        if len(box) != 4:
            raise InputError(f"layout object {name!r}: a box needs 4 numbers [x1, y1, x2, y2], got {list(box)}")
        pairs.append((str(name), tuple(float(v) for v in box)))  # type: ignore[misc]
    return pairs


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``[x1, y1, x2, y2]`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def judge_missing(reasoning: str | None, names: Sequence[str]) -> list[str]:
    """The objects whose head noun a clause of the judge's reasoning names with a negation."""
    if not reasoning:
        return []
    clauses = [c for c in _CLAUSE.split(reasoning) if _NEGATION.search(c)]
    out = []
    for name in names:
        words = re.findall(r"[a-z]+", name.lower())
        if not words:
            continue
        head = words[-1]
        stems = {head, head[:-1] if head.endswith("s") else head + "s"}
        if any(set(re.findall(r"[a-z]+", c.lower())) & stems for c in clauses):
            out.append(name)
    return out


class LayoutAdherenceScorer:
    """Per planned object the detector's best IoU with its box; recall@0.5 and mean IoU per image."""

    name = "layout-adherence"
    keys = ("layout_recall", "layout_miou")
    needs_run = True  # score_records passes the run's layouts (run.json) with each image

    def __init__(self, model: str = DEFAULT_DETECTOR, *, threshold: float = 0.1, device: str | None = None,
                 batch_size: int = 8) -> None:
        self.model_id, self.threshold, self.batch_size = model, threshold, batch_size
        self.model, self.processor, self.device = load_scoring_model(
            "detector", model, device, "AutoModelForZeroShotObjectDetection", "AutoProcessor")
        kind = getattr(self.model.config, "model_type", "")
        if kind not in ("owlv2", "owlvit"):
            raise BackendError(f"{model}: a {kind or 'unknown'} detector; layout adherence runs OWLv2 or OWL-ViT "
                               f"checkpoints (e.g. {DEFAULT_DETECTOR})")
        self.pads_to_square = kind == "owlv2"  # OWLv2's processor pads the image to a square before resizing
        self.max_text = int(self.model.config.text_config.max_position_embeddings)

    @property
    def settings(self) -> dict[str, Any]:
        return {"reference": REFERENCE, "model": self.model_id, "threshold": self.threshold, "found_iou": FOUND_IOU}

    def detect(self, images: Sequence[Any], queries: Sequence[Sequence[str]]) -> list[list[list[tuple[float, tuple[float, ...]]]]]:
        """Per image, per query: (score, normalized box) of every detection at or above the threshold."""
        import torch

        out: list[list[list[tuple[float, tuple[float, ...]]]]] = []
        for start in range(0, len(images), self.batch_size):
            batch_images = [im.convert("RGB") for im in images[start : start + self.batch_size]]
            batch_queries = [list(q) for q in queries[start : start + self.batch_size]]
            with torch.inference_mode():
                inputs = self.processor(text=batch_queries, images=batch_images, return_tensors="pt", truncation=True,
                                        max_length=self.max_text).to(self.device)
                result = self.model(**inputs)
            scores = result.logits.float().sigmoid()  # (batch, patches, max queries)
            boxes = result.pred_boxes.float()  # (batch, patches, 4): cx, cy, w, h of the processed image
            for b, (image, qs) in enumerate(zip(batch_images, batch_queries, strict=True)):
                w, h = image.size
                sx, sy = (max(w, h) / w, max(w, h) / h) if self.pads_to_square else (1.0, 1.0)
                cx, cy, bw, bh = boxes[b].unbind(-1)
                corners = torch.stack([(cx - bw / 2) * sx, (cy - bh / 2) * sy, (cx + bw / 2) * sx, (cy + bh / 2) * sy], -1)
                corners = corners.clamp(0, 1).tolist()
                per_query = []
                for q in range(len(qs)):
                    column = scores[b, :, q].tolist()
                    per_query.append([(s, tuple(corners[p])) for p, s in enumerate(column) if s >= self.threshold])
                out.append(per_query)
        return out

    def adherence_batch(self, images: Sequence[Any], layouts: Sequence[Pairs]) -> list[Adherence]:
        """Each image against its layout (every layout with at least one object)."""
        detections = self.detect(images, [[name for name, _ in pairs] for pairs in layouts])
        out = []
        for pairs, found in zip(layouts, detections, strict=True):
            out.append(Adherence([(name, box, max((iou(box, d) for _, d in hits), default=0.0))
                                  for (name, box), hits in zip(pairs, found, strict=True)]))
        return out

    def adherence(self, image: Any, layout: Any) -> Adherence:
        """One image against one layout (a ``Layout``, its JSON, or (name, box) pairs): the verifier's call."""
        pairs = layout_pairs(layout)
        if not pairs:
            raise InputError("layout adherence needs a layout with at least one object")
        return self.adherence_batch([image], [pairs])[0]

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        return [metrics for metrics, _ in self.score_items(items)]

    def score_items(self, items: Sequence[ScoreItem]) -> list[tuple[dict[str, float], dict[str, Any]]]:
        layouts = [layout_pairs(item.layout) for item in items]
        todo = [i for i, pairs in enumerate(layouts) if pairs]
        found = dict(zip(todo, self.adherence_batch([items[i].image for i in todo], [layouts[i] for i in todo]), strict=True))
        out: list[tuple[dict[str, float], dict[str, Any]]] = []
        for i, item in enumerate(items):
            if i not in found:
                out.append(({}, {"not_applicable": "the image was rendered without a layout"}))
                continue
            a = found[i]
            details: dict[str, Any] = {"objects": [{"name": n, "box": list(b), "iou": round(v, 4)} for n, b, v in a.objects]}
            if item.run is not None and item.run_dir is not None:
                details["rounds"] = self.diagnose(item.run, Path(item.run_dir))
            out.append(({"layout_recall": a.recall, "layout_miou": a.mean_iou}, details))
        return out

    def diagnose(self, run: dict[str, Any], run_dir: Path) -> list[dict[str, Any]]:
        """Per round of a run: objects found in their boxes, objects the judge called missing, and
        whether the plan or the render failed (None when the judge called the round good)."""
        from PIL import Image

        rounds = [r for r in run.get("rounds") or [] if isinstance(r, dict)]
        with_layout = [r for r in rounds if layout_pairs(r.get("layout"))]
        images = []
        for r in with_layout:
            path = (run_dir / str((r.get("image") or {}).get("path", ""))).resolve()
            if run_dir.resolve() not in path.parents or not path.is_file():
                raise InputError(f"{run_dir}: round {r.get('index')} names an image outside its run directory or none")
            images.append(Image.open(path).convert("RGB"))
        scored = dict(zip((id(r) for r in with_layout),
                          self.adherence_batch(images, [layout_pairs(r["layout"]) for r in with_layout]) if with_layout else [],
                          strict=True))
        out = []
        for r in rounds:
            a = scored.get(id(r))
            names = [n for n, _ in layout_pairs(r.get("layout")) or []]
            missing = judge_missing(r.get("reasoning"), names)
            if a is None:
                failed = None if r.get("good") else "no plan"
            else:
                failed = None if r.get("good") else ("render" if a.missed else "plan")
            out.append({"round": r.get("index"), "score": r.get("score"), "good": r.get("good"),
                        "recall": None if a is None else round(a.recall, 4),
                        "found": [] if a is None else a.found, "missed": [] if a is None else a.missed,
                        "judge_missing": missing, "failed": failed})
        return out
