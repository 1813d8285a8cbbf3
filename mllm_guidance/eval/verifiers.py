"""Verifiers: cheap scorers that rank a render's candidate images before the MLLM judge sees one.

Inference-time search needs a verifier far cheaper than the judge (Ma et al., "Inference-Time
Scaling for Diffusion Models beyond Scaling Denoising Steps", 2025, search over noises ranked by
CLIP / aesthetic / ImageReward verifiers). Each verifier here reuses an ``eval/`` scorer's model:

- ``clip``: the CLIP cosine of image and prompt (``eval.clipscore``'s T2I-CompBench similarity).
- ``layout-clip``: layout adherence: each planned box's crop against its object's description,
  by CLIP cosine, averaged over the objects (the whole image against the prompt when there is no
  layout). It checks what the plan put where, without a detector's weights; a detector-based
  adherence metric from ``eval/`` can take its place by name.
- ``blip-vqa``: T2I-CompBench's disentangled BLIP-VQA (``eval.blip``).

``rank(prompt, layout, images)`` returns one score per image, higher is better. Models load once
per process (``eval.models``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mllm_guidance.eval.clipscore import DEFAULT_CLIP
from mllm_guidance.eval.models import embed_images, embed_texts, load_clip
from mllm_guidance.layout import Layout
from mllm_guidance.repair import pixel_rect


class ClipVerifier:
    name = "clip"

    def __init__(self, model: str | None = None, device: str | None = None) -> None:
        self.model_id = model or DEFAULT_CLIP
        self.clip, self.processor, self.device = load_clip(self.model_id, device)

    def rank(self, prompt: str, layout: Layout | None, images: Sequence[Any]) -> list[float]:
        image_emb = embed_images(self.clip, self.processor, list(images), self.device)
        text_emb = embed_texts(self.clip, self.processor, [prompt], self.device)
        return [float(v) for v in (image_emb @ text_emb[0]).tolist()]


class LayoutClipVerifier(ClipVerifier):
    name = "layout-clip"

    def rank(self, prompt: str, layout: Layout | None, images: Sequence[Any]) -> list[float]:
        if layout is None or layout.is_empty:
            return super().rank(prompt, layout, images)
        names = [o.name for o in layout.objects]
        text_emb = embed_texts(self.clip, self.processor, names, self.device)
        scores = []
        for image in images:
            crops = [image.crop(pixel_rect(o.box.as_list(), image.width, image.height)) for o in layout.objects]
            crop_emb = embed_images(self.clip, self.processor, crops, self.device)
            scores.append(float((crop_emb * text_emb).sum(-1).mean()))
        return scores


class BlipVqaVerifier:
    name = "blip-vqa"

    def __init__(self, model: str | None = None, device: str | None = None) -> None:
        from mllm_guidance.eval.blip import DEFAULT_VQA, BlipVqaScorer

        self.scorer = BlipVqaScorer(model or DEFAULT_VQA, device=device)

    def rank(self, prompt: str, layout: Layout | None, images: Sequence[Any]) -> list[float]:
        from mllm_guidance.eval.scorers import ScoreItem

        return [float(v["blip_vqa"]) for v in self.scorer.score([ScoreItem(prompt, im) for im in images])]


VERIFIERS: dict[str, type] = {"clip": ClipVerifier, "layout-clip": LayoutClipVerifier, "blip-vqa": BlipVqaVerifier}
