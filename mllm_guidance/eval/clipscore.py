"""CLIPScore, two references from one CLIP (default ``openai/clip-vit-base-patch32``: both use ViT-B/32).

- ``clipscore_cos``: T2I-CompBench's CLIP similarity (Karine-Huang/T2I-CompBench
  ``CLIPScore_eval/CLIP_similarity.py`` @ c6f6b14): the cosine of the normalized image and prompt
  embeddings. With ``complex_rule`` the prompt loses every token spaCy tags ``ADJ`` first, as their
  ``--complex`` flag does for the complex category (needs ``en_core_web_sm``).
- ``clipscore``: Hessel et al. 2021 (jmhessel/clipscore ``clipscore.py`` @ d200b56):
  2.5 * max(cos, 0) with the text "A photo depicts " + prompt.

Images go through CLIP's own preprocessing (shortest side to 224, bicubic, center crop, CLIP
normalization), in fp32. Texts over CLIP's 77 tokens are cut; T2I-CompBench's ``clip.tokenize``
raises on them instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mllm_guidance.eval import phrases
from mllm_guidance.eval.models import embed_images, embed_texts, load_clip

if TYPE_CHECKING:
    from mllm_guidance.eval.scorers import ScoreItem

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
HESSEL_PREFIX = "A photo depicts "


class ClipScorer:
    name = "clipscore"

    def __init__(self, model: str = DEFAULT_CLIP, *, complex_rule: bool = False, device: str | None = None, batch_size: int = 16) -> None:
        self.model_id, self.complex_rule, self.batch_size = model, complex_rule, batch_size
        self.nlp = phrases.require_spacy() if complex_rule else None
        self.clip, self.processor, self.device = load_clip(model, device)

    @property
    def settings(self) -> dict[str, Any]:
        return {"reference": "T2I-CompBench CLIP_similarity.py @ c6f6b14 (clipscore_cos); Hessel et al. 2021 clipscore.py @ d200b56 (clipscore)",
                "model": self.model_id, "complex_rule": self.complex_rule, "hessel_prefix": HESSEL_PREFIX}

    def compbench_text(self, prompt: str) -> str:
        return phrases.drop_adjectives(self.nlp(prompt)) if self.nlp is not None else prompt

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        out: list[dict[str, float]] = []
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            images = embed_images(self.clip, self.processor, [i.image for i in batch], self.device)
            plain = embed_texts(self.clip, self.processor, [self.compbench_text(i.prompt) for i in batch], self.device)
            hessel = embed_texts(self.clip, self.processor, [HESSEL_PREFIX + i.prompt for i in batch], self.device)
            for cos, cos_hessel in zip((images * plain).sum(-1).tolist(), (images * hessel).sum(-1).tolist(), strict=True):
                out.append({"clipscore_cos": cos, "clipscore": 2.5 * max(cos_hessel, 0.0)})
        return out
