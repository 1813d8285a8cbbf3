"""BLIP-based scorers, each reproducing a published reference with transformers' BLIP weights.

``blip-vqa`` (column ``blip_vqa``): T2I-CompBench's disentangled BLIP-VQA
(Karine-Huang/T2I-CompBench ``BLIPvqa_eval/BLIP_vqa.py`` @ bfe6300, ``models/blip_vqa.py``
``vqa_prob`` @ 7710d05, on salesforce/BLIP ``models/blip_vqa.py`` @ a176f1e). Per prompt, up to 8
noun-chunk questions (``eval.phrases``); per question the VQA model's probability of "yes" against
"no" at the first answer token, P(yes) / (P(yes) + P(no)); the score is the product over the
questions (1.0 when there is none, as theirs). What the reference does and the transformers port
does not, done here:

- the question's first token is BLIP's ``[ENC]`` token, not BERT's ``[CLS]`` (the original's
  ``question.input_ids[:, 0] = tokenizer.enc_token_id``; transformers feeds ``[CLS]``). ``[ENC]``
  is the token after ``[DEC]`` in the original vocabulary; transformers' BLIP tokenizers do not
  list it, so its id is taken as ``[DEC] + 1`` (the embedding row the weights carry for it);
- images are resized to 480 x 480 (bicubic, CLIP normalization), the VQA configuration's size,
  with the position embeddings interpolated (the transformers weights were converted at 384);
- questions are cut at 35 tokens; the decoder attends to the question's tokens only (the
  reference pads and masks; transformers 5.x drops that mask in the decoder's cross-attention, so
  questions run in groups of equal length, unpadded).

Default weights ``Salesforce/blip-vqa-capfilt-large``: by its name the transformers port of
``model_base_vqa_capfilt_large.pth``, the checkpoint T2I-CompBench's ``configs/vqa.yaml`` loads.

``blip-clip`` (column ``blip_clip``): a caption of the image compared with the prompt in CLIP's
text space. Two recipes:

- ``attend-and-excite`` (default): yuval-alaluf/Attend-and-Excite
  ``metrics/blip_captioning_and_clip_similarity.py`` @ 5f10e15: BLIP base COCO captioner (LAVIS
  ``blip_caption``/``base_coco`` -> ``Salesforce/blip-image-captioning-base``; decoder prompt
  "a picture of ", 3 beams, 10 to 30 tokens), CLIP ViT-B/16, the prompt embedded through the 80
  ImageNet templates (``data/attend-and-excite/``), normalized, averaged, normalized again, and
  compared with the normalized caption embedding.
- ``blip2``: the thesis's BLIP-2 captioner (``Salesforce/blip2-opt-2.7b``, LAVIS ``blip2_opt``
  generation defaults: 5 beams, at most 30 new tokens); the thesis names only the captioner, so
  the CLIP side stays Attend-and-Excite's.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from mllm_guidance.errors import BackendError, InputError
from mllm_guidance.eval import phrases
from mllm_guidance.eval.models import embed_texts, load_clip, load_scoring_model

if TYPE_CHECKING:
    from mllm_guidance.eval.scorers import ScoreItem

DEFAULT_VQA = "Salesforce/blip-vqa-capfilt-large"
QUESTION_MODES = ("auto", "spacy", "rules")


class BlipVqaScorer:
    """T2I-CompBench's disentangled BLIP-VQA with the original BLIP's [ENC] token and 480 px input."""

    name = "blip-vqa"
    reference = "T2I-CompBench BLIP-VQA (Karine-Huang/T2I-CompBench BLIPvqa_eval/BLIP_vqa.py @ bfe6300)"

    def __init__(self, model: str = DEFAULT_VQA, *, image_size: int = 480, questions: str = "auto",
                 device: str | None = None, batch_size: int = 16) -> None:
        if questions not in QUESTION_MODES:
            raise InputError(f"BLIP-VQA questions {questions!r}: choose from {', '.join(QUESTION_MODES)}")
        self.model_id, self.image_size, self.batch_size = model, image_size, batch_size
        self.model, self.processor, self.device = load_scoring_model("BLIP", model, device, "BlipForQuestionAnswering", "BlipProcessor")
        tok = self.processor.tokenizer
        self.yes, self.no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
        if self.yes == tok.unk_token_id or self.no == tok.unk_token_id:
            raise BackendError(f"{model}: its vocabulary has no 'yes' / 'no' tokens; not a BLIP VQA model")
        self.enc_token_id = enc_token_id(tok, self.model.config.text_config)
        self.nlp = None
        if questions == "spacy":
            self.nlp = phrases.require_spacy()
        elif questions == "auto":
            self.nlp = phrases.spacy_pipeline()
        self.questions_mode = "spacy" if self.nlp is not None else "rules"
        #: the reference's spaCy was asked for (auto) and is missing: said on stderr, in every record and in the summary
        self.spacy_fallback = questions == "auto" and self.nlp is None
        self.notice = (f"blip-vqa: spaCy's {phrases.SPACY_MODEL} is not installed, so its questions come from the "
                       f"rule-based splitter, not T2I-CompBench's spaCy noun chunks ({phrases.INSTALL_SPACY}; "
                       "--require-spacy refuses to run without it)") if self.spacy_fallback else None

    @property
    def settings(self) -> dict[str, Any]:
        return {"reference": self.reference, "model": self.model_id, "image_size": self.image_size,
                "questions": self.questions_mode, "spacy_fallback": self.spacy_fallback, "first_token": "[ENC]"}

    def questions(self, prompt: str) -> list[str]:
        if self.nlp is not None:
            return phrases.spacy_questions(self.nlp(prompt))
        return phrases.questions_from_chunks(phrases.rule_noun_phrases(prompt))

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        return [metrics for metrics, _ in self.score_items(items)]

    def score_items(self, items: Sequence[ScoreItem]) -> list[tuple[dict[str, float], dict[str, Any]]]:
        asked = [self.questions(item.prompt) for item in items]
        flat = [(i, q) for i, qs in enumerate(asked) for q in qs]
        answers: list[list[float]] = [[] for _ in items]
        for start in range(0, len(flat), self.batch_size):
            chunk = flat[start : start + self.batch_size]
            for (i, _), p in zip(chunk, self.p_yes([items[i].image for i, _ in chunk], [q for _, q in chunk]), strict=True):
                answers[i].append(p)
        out = []
        for qs, ps in zip(asked, answers, strict=True):
            product = 1.0
            for p in ps:
                product *= p
            out.append(({"blip_vqa": product}, {"questions": qs, "p_yes": [round(p, 6) for p in ps]}))
        return out

    def p_yes(self, images: Sequence[Any], questions: Sequence[str]) -> list[float]:
        """P(yes) / (P(yes) + P(no)) of the first answer token, per (image, question): the
        reference's ``vqa_prob``. Questions run in groups of equal length, so no padding is needed:
        transformers' BLIP text decoder drops the question mask in its cross-attention (5.x), which
        would let padding change the answer; the reference masks it, and unpadded groups are the same."""
        groups: dict[int, list[int]] = {}
        tokens = self.processor.tokenizer(list(questions), truncation=True, max_length=35)["input_ids"]
        for i, ids in enumerate(tokens):
            groups.setdefault(len(ids), []).append(i)
        out = [0.0] * len(questions)
        for indices in groups.values():
            for i, p in zip(indices, self._p_yes([images[i] for i in indices], [tokens[i] for i in indices]), strict=True):
                out[i] = p
        return out

    def _p_yes(self, images: Sequence[Any], token_ids: Sequence[list[int]]) -> list[float]:
        import torch

        size = {"height": self.image_size, "width": self.image_size}
        with torch.inference_mode():
            pixels = self.processor.image_processor([im.convert("RGB") for im in images], size=size,
                                                    return_tensors="pt")["pixel_values"].to(self.device)
            input_ids = torch.tensor(token_ids, dtype=torch.long, device=self.device)
            input_ids[:, 0] = self.enc_token_id
            mask = torch.ones_like(input_ids)
            interpolate = self.image_size != self.model.config.vision_config.image_size
            image_embeds = self.model.vision_model(pixel_values=pixels, interpolate_pos_encoding=interpolate)[0]
            image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
            question = self.model.text_encoder(input_ids=input_ids, attention_mask=mask, encoder_hidden_states=image_embeds,
                                               encoder_attention_mask=image_mask, return_dict=False)[0]
            start = torch.full((question.shape[0], 1), self.model.decoder_start_token_id, device=self.device)
            logits = self.model.text_decoder(input_ids=start, encoder_hidden_states=question,
                                             encoder_attention_mask=mask, return_dict=True).logits[:, 0, :]
            p = logits.float().softmax(-1)
            yes, no = p[:, self.yes], p[:, self.no]
        return (yes / (yes + no).clamp_min(1e-12)).tolist()


def enc_token_id(tokenizer: Any, text_config: Any) -> int:
    """BLIP's ``[ENC]`` id: the tokenizer's own when it lists the token, else the slot after
    ``[DEC]`` (the original adds ``[DEC]`` then ``[ENC]`` to BERT's vocabulary; transformers'
    tokenizers stop at ``[DEC]`` while the weights keep the row)."""
    known = tokenizer.convert_tokens_to_ids("[ENC]")
    if known is not None and known != tokenizer.unk_token_id:
        return int(known)
    slot = int(text_config.bos_token_id) + 1
    if slot == len(tokenizer) and slot < text_config.vocab_size:
        return slot
    raise BackendError("this BLIP model has no [ENC] token (neither in its tokenizer nor right after [DEC]); "
                       "the reference BLIP-VQA needs the original vocabulary")


# -- BLIP-CLIP ------------------------------------------------------------------------------------

RECIPES: dict[str, dict[str, Any]] = {
    "attend-and-excite": {"captioner": "Salesforce/blip-image-captioning-base", "model_class": "BlipForConditionalGeneration",
                          "processor_class": "BlipProcessor", "prompt": "a picture of ",
                          "generate": {"num_beams": 3, "max_length": 30, "min_length": 10, "repetition_penalty": 1.0}},
    "blip2": {"captioner": "Salesforce/blip2-opt-2.7b", "model_class": "Blip2ForConditionalGeneration",
              "processor_class": "Blip2Processor", "prompt": "",
              "generate": {"num_beams": 5, "max_new_tokens": 30, "min_length": 1, "repetition_penalty": 1.0}},
}
DEFAULT_BLIP_CLIP_CLIP = "openai/clip-vit-base-patch16"


class BlipClipScorer:
    """A BLIP caption against the prompt in CLIP text space, the Attend-and-Excite way."""

    name = "blip-clip"

    def __init__(self, model: str | None = None, *, recipe: str = "attend-and-excite", clip_model: str = DEFAULT_BLIP_CLIP_CLIP,
                 device: str | None = None, batch_size: int = 16, generate: dict[str, Any] | None = None) -> None:
        if recipe not in RECIPES:
            raise InputError(f"BLIP-CLIP recipe {recipe!r}: choose from {', '.join(RECIPES)}")
        self.recipe = dict(RECIPES[recipe], name=recipe)
        self.model_id = model or self.recipe["captioner"]
        self.clip_id, self.batch_size = clip_model, batch_size
        self.generate_kwargs = {**self.recipe["generate"], **(generate or {})}
        self.model, self.processor, self.device = load_scoring_model(
            "BLIP captioner", self.model_id, device, self.recipe["model_class"], self.recipe["processor_class"])
        self.clip, self.clip_processor, _ = load_clip(clip_model, device)
        self._prompt_embeddings: dict[str, Any] = {}

    @property
    def settings(self) -> dict[str, Any]:
        return {"reference": "Attend-and-Excite metrics/blip_captioning_and_clip_similarity.py @ 5f10e15",
                "recipe": self.recipe["name"], "captioner": self.model_id, "clip_model": self.clip_id,
                "generate": self.generate_kwargs}

    def captions(self, images: Sequence[Any]) -> list[str]:
        import torch

        prompt = self.recipe["prompt"]
        with torch.inference_mode():
            rgb = [im.convert("RGB") for im in images]
            if prompt:
                inputs = self.processor(images=rgb, text=[prompt] * len(rgb), return_tensors="pt").to(self.device)
            else:
                inputs = self.processor(images=rgb, return_tensors="pt").to(self.device)
            out = self.model.generate(**inputs, do_sample=False, **self.generate_kwargs)
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        return [t[len(prompt):].strip() for t in texts]  # LAVIS cuts the decoder prompt off by its length

    def prompt_embedding(self, prompt: str) -> Any:
        """The prompt through the 80 ImageNet templates: embeddings normalized, averaged, normalized."""
        if prompt not in self._prompt_embeddings:
            texts = template_texts(prompt)
            mean = embed_texts(self.clip, self.clip_processor, texts, self.device).mean(dim=0)
            self._prompt_embeddings[prompt] = mean / mean.norm()
        return self._prompt_embeddings[prompt]

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        return [metrics for metrics, _ in self.score_items(items)]

    def score_items(self, items: Sequence[ScoreItem]) -> list[tuple[dict[str, float], dict[str, Any]]]:
        out = []
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            captions = self.captions([i.image for i in batch])
            embedded = embed_texts(self.clip, self.clip_processor, captions, self.device)
            for item, caption, vector in zip(batch, captions, embedded, strict=True):
                cos = float((vector * self.prompt_embedding(item.prompt)).sum())
                out.append(({"blip_clip": cos}, {"caption": caption}))
        return out


@functools.lru_cache(maxsize=1)
def imagenet_templates() -> tuple[str, ...]:
    text = resources.files("mllm_guidance.eval").joinpath("data", "attend-and-excite", "imagenet_templates.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def template_texts(prompt: str) -> list[str]:
    """The prompt in every template, with Attend-and-Excite's clean-up kept as it is: plain
    substring replacements of "a a" and "the a" by "a" (which also touch words: "pizza and")."""
    return [t.format(prompt).replace("a a", "a").replace("the a", "a") for t in imagenet_templates()]
