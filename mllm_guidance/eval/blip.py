"""BLIP-based scorers of T2I-CompBench's kind.

- ``blip-vqa`` (disentangled BLIP-VQA): the prompt is split into noun phrases, each asked as
  "<phrase>?" to a BLIP VQA model (default ``Salesforce/blip-vqa-base``); the answer's probability
  is P(yes) / (P(yes) + P(no)) at the first answer token, and the score is the product over
  phrases.
- ``blip-clip``: BLIP captions the image (default ``Salesforce/blip-image-captioning-large``; the
  thesis used a BLIP-2 captioner), and the caption is compared with the prompt in CLIP's text space
  (cosine of the normalized text embeddings).

Noun phrases come from a documented rule-based splitter (``noun_phrases``), not a parser model: no
download at run time, and nothing re-uploaded by third parties to trust.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from mllm_guidance.errors import BackendError
from mllm_guidance.eval.scorers import ScoreItem, embed_texts, load_clip, load_scoring_model

# Words that end a noun phrase: verbs, relations and conjunctions that join objects in prompts.
_BREAKS = (
    r"and|or|but|while|with|without|is|are|was|were|be|being|has|have|had|"
    r"on top of|on the left of|on the right of|to the left of|to the right of|left of|right of|in front of|"
    r"on|in|at|under|below|beneath|above|over|behind|beside|next to|near|by|inside|outside|into|onto|from|"
    r"across|along|between|among|against|around|through|toward|towards|of|for|to|as|than"
)
_SPLIT = re.compile(rf"\b(?:{_BREAKS})\b|[,.;:!?]", re.IGNORECASE)
_DETERMINER = r"(?:a|an|the|some|two|three|four|five|its|their|his|her|this|that|these|those)"
_VERB_LEAD = re.compile(rf"^(?:\w+(?:ing|ed|es|s)\s+)+(?={_DETERMINER}\b)", re.IGNORECASE)
_LEAD = re.compile(rf"^{_DETERMINER}\s+", re.IGNORECASE)
_ING_LEAD = re.compile(r"^(?:\w+ing\b\s*)+", re.IGNORECASE)
_STOP = {"it", "them", "they", "he", "she", "there", "which", "who", "each", "other", "one", "top", "side", "left",
         "right", "a", "an", "the", "some"}


def noun_phrases(prompt: str) -> list[str]:
    """Noun phrases of a prompt, by splitting at auxiliary verbs, relations and conjunctions and
    dropping leading -ing verbs ("sitting", "offering them"), a verb that leads a determiner
    ("holds a tray" -> "tray") and the determiner. A chunk that starts with a noun ending in
    -ing and no article ("painting on a wall") loses that noun: the price of needing no model.

    ``"The red hat was on top of the brown coat rack."`` -> ``["red hat", "brown coat rack"]``.
    Falls back to the whole prompt when nothing is left."""
    phrases = []
    for chunk in _SPLIT.split(prompt):
        words = _ING_LEAD.sub("", " ".join(chunk.split()))  # "sitting", "offering them": verbs, not objects
        words = _LEAD.sub("", _VERB_LEAD.sub("", words)).strip()
        if words and words.lower() not in _STOP and any(c.isalpha() for c in words):
            phrases.append(words.lower())
    return phrases or [" ".join(prompt.split()).strip(" .").lower()]


class BlipVqaScorer:
    name = "blip-vqa"

    def __init__(self, model: str = "Salesforce/blip-vqa-base", *, device: str | None = None, batch_size: int = 16) -> None:
        self.model, self.processor, self.device = load_scoring_model("BLIP", model, device, "BlipForQuestionAnswering", "BlipProcessor")
        tok = self.processor.tokenizer
        self.yes, self.no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
        if self.yes == tok.unk_token_id or self.no == tok.unk_token_id:
            raise BackendError(f"{model}: its vocabulary has no 'yes' / 'no' tokens; not a BLIP VQA model")
        self.batch_size = batch_size

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        questions = [(i, f"{phrase}?") for i, item in enumerate(items) for phrase in noun_phrases(item.prompt)]
        probs = [1.0] * len(items)
        for start in range(0, len(questions), self.batch_size):
            chunk = questions[start : start + self.batch_size]
            yes = self.p_yes([items[i].image for i, _ in chunk], [q for _, q in chunk])
            for (i, _), p in zip(chunk, yes, strict=True):
                probs[i] *= p
        return [{"blip_vqa": p} for p in probs]

    def p_yes(self, images: Sequence[Any], questions: Sequence[str]) -> list[float]:
        """P(yes) / (P(yes) + P(no)) of the first answer token, per (image, question)."""
        import torch

        with torch.inference_mode():
            inputs = self.processor(images=[im.convert("RGB") for im in images], text=list(questions),
                                    return_tensors="pt", padding=True).to(self.device)
            image_embeds = self.model.vision_model(pixel_values=inputs["pixel_values"])[0]
            image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
            question = self.model.text_encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                               encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask,
                                               return_dict=False)[0]
            start = torch.full((question.shape[0], 1), self.model.decoder_start_token_id, device=self.device)
            logits = self.model.text_decoder(input_ids=start, encoder_hidden_states=question,
                                             encoder_attention_mask=inputs["attention_mask"], return_dict=True).logits[:, -1, :]
            p = logits.float().softmax(-1)
            yes, no = p[:, self.yes], p[:, self.no]
        return (yes / (yes + no).clamp_min(1e-12)).tolist()


class BlipClipScorer:
    name = "blip-clip"

    def __init__(self, model: str = "Salesforce/blip-image-captioning-large", *, clip_model: str = "openai/clip-vit-large-patch14",
                 device: str | None = None, batch_size: int = 16, max_new_tokens: int = 30) -> None:
        self.model, self.processor, self.device = load_scoring_model("BLIP", model, device, "BlipForConditionalGeneration", "BlipProcessor")
        self.clip, self.clip_processor, _ = load_clip(clip_model, device)
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    def captions(self, images: Sequence[Any]) -> list[str]:
        import torch

        with torch.inference_mode():
            inputs = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt").to(self.device)
            out = self.model.generate(pixel_values=inputs["pixel_values"], max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
        return [self.processor.decode(ids, skip_special_tokens=True).strip() for ids in out]

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        out = []
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            captions = self.captions([i.image for i in batch])
            a = embed_texts(self.clip, self.clip_processor, captions, self.device)
            b = embed_texts(self.clip, self.clip_processor, [i.prompt for i in batch], self.device)
            out += [{"blip_clip": cos} for cos in (a * b).sum(-1).tolist()]
        return out
