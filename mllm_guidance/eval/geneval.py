"""GenEval (Ghosh et al. 2023): object-focused checks of an image against its prompt's metadata.

Reference: djghosh13/geneval ``evaluation/evaluate_images.py`` and ``evaluation/summary_scores.py``
@ af4902f (MIT; prompts and metadata ``prompts/evaluation_metadata.jsonl`` @ d927da8, shipped in
``data/geneval/``). The same rules:

- detections per COCO class kept when their score is above 0.3 (0.9 for the counting task), at
  most 16 per class, most confident first (their NMS threshold 1.0 keeps every one);
- ``include`` clauses (all must hold): at least ``count`` objects of the class; with ``color``,
  CLIP ViT-L/14 classifies each of the first ``count`` objects among ten colours on the crop of
  its box with everything outside its mask painted grey (#999), templates "a photo of a {c}
  {class}", "a photo of a {c}-colored {class}", "a photo of a {c} object" (normalised, averaged,
  normalised) and all ``count`` must be the colour; with ``position``, each object must stand in
  the relation to every object of the target clause, offsets shrunk by 0.1 x the two boxes' size
  (``relative_position``); ``exclude`` clauses: fewer than ``count`` objects of the class;
- an image is correct or not; a task's score is the share of its correct images and the overall
  score the mean of the six tasks' scores (``summary_scores.py``), 4 images a prompt.

The detector is the reference's architecture through transformers: Mask2Former with a Swin-S
backbone trained on COCO instances (default ``facebook/mask2former-swin-small-coco-instance``).
Known differences from the mmdet model GenEval runs (``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco``):
the weights are Meta's original release converted to transformers, not OpenMMLab's retraining
(same architecture and data, different training run: detections and their scores differ); the
image goes through transformers' preprocessing (the checkpoint's processor: shorter side 384)
where mmdet resizes to 1333 x 800; the instance post-processing is mmdet's (top 100 query-class
pairs, score = class probability x mean mask probability, boxes from the binary masks) done here on
transformers' outputs. CLIP ViT-L/14 is ``openai/clip-vit-large-patch14`` through transformers
where theirs uses open_clip's ``ViT-L-14`` / ``openai`` (the same weights and preprocessing).
GenEval numbers from this scorer are therefore close to, not identical with, the leaderboard's.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from mllm_guidance.errors import BackendError, InputError
from mllm_guidance.eval.models import embed_images, embed_texts, load_clip, load_scoring_model

if TYPE_CHECKING:
    from mllm_guidance.eval.scorers import ScoreItem

DEFAULT_DETECTOR = "facebook/mask2former-swin-small-coco-instance"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
TASKS = {"single_object": "Single Obj.", "two_object": "Two Obj.", "counting": "Counting", "colors": "Colors",
         "position": "Position", "color_attr": "Color Attri."}
COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]
THRESHOLD, COUNTING_THRESHOLD, MAX_OBJECTS, POSITION_THRESHOLD, TOP_K = 0.3, 0.9, 16, 0.1, 100
BACKGROUND = (0x99, 0x99, 0x99)


@functools.lru_cache(maxsize=1)
def metadata() -> dict[str, dict[str, Any]]:
    """GenEval's 553 prompts' metadata, by prompt text."""
    text = resources.files("mllm_guidance.eval").joinpath("data", "geneval", "evaluation_metadata.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {row["prompt"]: row for row in rows}


@functools.lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    text = resources.files("mllm_guidance.eval").joinpath("data", "geneval", "object_names.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def relative_position(box_a: Sequence[float], box_b: Sequence[float], threshold: float = POSITION_THRESHOLD) -> set[str]:
    """Where box A is relative to box B, GenEval's way: the centre offset shrunk by ``threshold`` x
    the two boxes' sizes per axis, then a direction if its normalised component exceeds 0.5."""
    ca = ((box_a[0] + box_a[2]) / 2, (box_a[1] + box_a[3]) / 2)
    cb = ((box_b[0] + box_b[2]) / 2, (box_b[1] + box_b[3]) / 2)
    dims = (abs(box_a[2] - box_a[0]) + abs(box_b[2] - box_b[0]), abs(box_a[3] - box_a[1]) + abs(box_b[3] - box_b[1]))
    offset = (ca[0] - cb[0], ca[1] - cb[1])
    revised = [max(abs(o) - threshold * d, 0.0) * (1 if o > 0 else -1 if o < 0 else 0) for o, d in zip(offset, dims, strict=True)]
    if all(abs(r) < 1e-3 for r in revised):
        return set()
    norm = (offset[0] ** 2 + offset[1] ** 2) ** 0.5
    dx, dy = revised[0] / norm, revised[1] / norm
    out = set()
    if dx < -0.5:
        out.add("left of")
    if dx > 0.5:
        out.add("right of")
    if dy < -0.5:
        out.add("above")
    if dy > 0.5:
        out.add("below")
    return out


def evaluate(objects: dict[str, list[tuple[Sequence[float], Any]]], meta: dict[str, Any],
             colors_of: Any) -> tuple[bool, list[str]]:
    """GenEval's verdict on detected ``objects`` (class -> [(box, mask)], most confident first);
    ``colors_of(class, objects)`` names each object's colour."""
    correct, reasons, groups = True, [], []
    for req in meta.get("include", []):
        name, count = req["class"], req["count"]
        found = objects.get(name, [])[:count]
        matched = True
        if len(found) < count:
            matched = False
            reasons.append(f"expected {name}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colors = colors_of(name, found)
                if colors.count(req["color"]) < count:
                    matched = False
                    reasons.append(f"expected {req['color']} {name}>={count}, found {colors.count(req['color'])} {req['color']}")
            if "position" in req and matched:
                relation, target = req["position"]
                if groups[target] is None:
                    matched = False
                    reasons.append(f"no target for {name} to be {relation}")
                else:
                    for obj in found:
                        for other in groups[target]:
                            seen = relative_position(obj[0], other[0])
                            if relation not in seen:
                                matched = False
                                reasons.append(f"expected {name} {relation} target, found {' and '.join(sorted(seen))} target")
                                break
                        if not matched:
                            break
        correct = correct and matched
        groups.append(found if matched else None)
    for req in meta.get("exclude", []):
        if len(objects.get(req["class"], [])) >= req["count"]:
            correct = False
            reasons.append(f"expected {req['class']}<{req['count']}, found {len(objects[req['class']])}")
    return correct, reasons


class GenEvalScorer:
    """GenEval's object, count, colour and position checks with Mask2Former and CLIP through transformers."""

    name = "geneval"
    keys = ("geneval",)

    def __init__(self, detector: str = DEFAULT_DETECTOR, *, clip_model: str = DEFAULT_CLIP, device: str | None = None) -> None:
        self.detector_id, self.clip_id = detector, clip_model
        self.model, self.processor, self.device = load_scoring_model(
            "Mask2Former", detector, device, "Mask2FormerForUniversalSegmentation", "AutoImageProcessor")
        labels = self.model.config.num_labels
        if labels != len(class_names()):
            raise BackendError(f"{detector}: {labels} classes; GenEval needs a COCO detector with its 80 classes")
        self.clip, self.clip_processor, _ = load_clip(clip_model, device)
        self._classifiers: dict[str, Any] = {}

    @property
    def settings(self) -> dict[str, Any]:
        return {"reference": "GenEval (djghosh13/geneval evaluation/evaluate_images.py @ af4902f)",
                "model": self.detector_id, "clip_model": self.clip_id}

    def detect(self, image: Any, threshold: float) -> dict[str, list[tuple[list[float], Any]]]:
        """Class name -> [(box [x1, y1, x2, y2, score] in pixels, boolean mask)], mmdet's instance
        post-processing on transformers' outputs, GenEval's threshold and per-class limit."""
        import torch

        image = image.convert("RGB")
        w, h = image.size
        with torch.inference_mode():
            inputs = self.processor(images=[image], return_tensors="pt").to(self.device)
            out = self.model(**inputs)
            valid = inputs["pixel_mask"][0] if "pixel_mask" in inputs else torch.ones(inputs["pixel_values"].shape[-2:])
            vh, vw = int(valid.any(1).sum()), int(valid.any(0).sum())
            ph, pw = inputs["pixel_values"].shape[-2:]
            masks = torch.nn.functional.interpolate(out.masks_queries_logits.float(), size=(ph, pw), mode="bilinear",
                                                    align_corners=False)[0, :, :vh, :vw]
            masks = torch.nn.functional.interpolate(masks[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            scores = out.class_queries_logits[0].float().softmax(-1)[:, :-1]
            classes = scores.shape[-1]
            top, index = scores.flatten().topk(min(TOP_K, scores.numel()))
            query, label = index // classes, index % classes
            binary = masks[query] > 0
            mask_score = (masks[query].sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
            final = (top * mask_score).tolist()
        names = class_names()
        detected: dict[str, list[tuple[list[float], Any]]] = {}
        order = sorted(range(len(final)), key=lambda i: -final[i])
        for i in order:
            if final[i] <= threshold:
                continue
            name = names[int(label[i])]
            if len(detected.setdefault(name, [])) >= MAX_OBJECTS:
                continue
            m = binary[i]
            rows, cols = m.any(1).nonzero(), m.any(0).nonzero()
            box = ([float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]
                   if len(rows) else [0.0, 0.0, 0.0, 0.0])
            detected[name].append((box + [final[i]], m.cpu().numpy()))
        return {k: v for k, v in detected.items() if v}

    def colors_of(self, image: Any, name: str, found: Sequence[tuple[Sequence[float], Any]]) -> list[str]:
        """Each object's colour: CLIP on its box crop with the rest of the image grey."""
        from PIL import Image

        if name not in self._classifiers:
            vectors = []
            for c in COLORS:
                texts = [f"a photo of a {c} {name}", f"a photo of a {c}-colored {name}", f"a photo of a {c} object"]
                mean = embed_texts(self.clip, self.clip_processor, texts, self.device).mean(0)
                vectors.append(mean / mean.norm())
            import torch

            self._classifiers[name] = torch.stack(vectors, dim=1)
        blank = Image.new("RGB", image.size, BACKGROUND)
        crops = []
        for box, mask in found:
            crop = Image.composite(image, blank, Image.fromarray(mask)) if mask is not None else image
            crops.append(crop.crop(tuple(box[:4])))
        features = embed_images(self.clip, self.clip_processor, crops, self.device)
        return [COLORS[int(i)] for i in (features @ self._classifiers[name]).argmax(1)]

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        return [metrics for metrics, _ in self.score_items(items)]

    def score_items(self, items: Sequence[ScoreItem]) -> list[tuple[dict[str, float], dict[str, Any]]]:
        known = metadata()
        out = []
        for item in items:
            meta = known.get(item.prompt)
            if meta is None:
                raise InputError(f"GenEval scores only its own 553 prompts; {item.prompt[:60]!r} is not one (use --suite geneval)")
            image = item.image.convert("RGB")
            objects = self.detect(image, COUNTING_THRESHOLD if meta["tag"] == "counting" else THRESHOLD)
            correct, reasons = evaluate(objects, meta, lambda name, found, image=image: self.colors_of(image, name, found))
            details = {"tag": meta["tag"], "reason": "\n".join(reasons),
                       "detected": {k: [[round(v, 2) for v in box] for box, _ in objs] for k, objs in objects.items()}}
            out.append(({"geneval": float(correct)}, details))
        return out


def geneval_table(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """GenEval's table row as leaderboards print it: the six tasks and their mean (Overall)."""
    by_task: dict[str, list[float]] = {}
    for r in records:
        if r.get("status") == "ok" and "geneval" in (r.get("metrics") or {}):
            tag = ((r.get("scoring") or {}).get("geneval") or {}).get("tag")
            by_task.setdefault(tag, []).append(r["metrics"]["geneval"])
    if not by_task:
        return None
    row: dict[str, Any] = {}
    for tag, label in TASKS.items():
        values = by_task.get(tag)
        row[label] = round(sum(values) / len(values), 4) if values else None
    scored = [v for v in row.values() if v is not None]
    row["Overall"] = round(sum(scored) / len(scored), 4)
    row["images"] = sum(len(v) for v in by_task.values())
    return row
