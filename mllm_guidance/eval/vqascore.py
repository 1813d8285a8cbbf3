"""VQAScore (Lin et al. 2024): the probability that a VLM answers "Yes" to
'Does this figure show "{prompt}"? Please answer yes or no.'

Reference: linzhiqiu/t2v_metrics (Apache-2.0). Three ways to compute it, one per ``model`` spec:

- ``clip-flant5-xxl`` / ``clip-flant5-xl``: the published model, CLIP-FlanT5
  (``t2v_metrics/models/vqascore_models/clip_t5_model.py`` and ``clip_t5/model/language_model/clip_t5.py``
  @ 10d549b, the last commit that ships it; it left the repository in 74c7208, 2026-06-04).
  Reimplemented in ``eval.clip_flant5``; see there for what is the same and what differs. The
  numbers the VQAScore and GenAI-Bench papers print are this model's.
- ``transformers:<id or path>``: any local VLM that ``AutoModelForImageTextToText`` loads (Qwen2.5-VL,
  Gemma 3, LLaVA...), as t2v_metrics' newer wrappers score them (``qwen2vl_model.py`` @ 6ecb74f):
  the chat template with the image then the question 'Does this figure show "{}"? Please answer Yes
  or No.' (their capitalisation), generation prompt added, and the softmax probability of the first
  token of "Yes" at the first answer position. Same model weights give the same numbers as theirs
  up to the image preprocessing (they resize with ``qwen_vl_utils`` first; here the processor's own).
  No published table uses these models for GenAI-Bench: not comparable with the paper's numbers.
- ``openai:<model>`` (with ``base_url`` for any OpenAI-compatible server: vLLM, llama.cpp...): the
  API route of ``gpt4v_model.py`` @ 6ecb74f: one user message, the question then the image (PNG
  data URL), ``logprobs`` with ``top_logprobs=2`` and one output token; P = exp(logprob of "yes")
  when it is among the top tokens (stripped, lower-cased), else 1 - exp(logprob of "no"), else 0.
  Two differences, both recorded: an unreadable or failed call is an error here (theirs scores 0
  after one retry), and no temperature is sent (as theirs). Needs ``OPENAI_API_KEY`` unless
  ``base_url`` points at a server without keys. GPT-4o's VQAScore is not the paper's metric.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from mllm_guidance.errors import BackendError, InputError
from mllm_guidance.redact import redact_text

if TYPE_CHECKING:
    from mllm_guidance.eval.scorers import ScoreItem

#: The question of CLIP-FlanT5 (clip_t5_model.py) and the one of t2v_metrics' newer wrappers.
CLIP_T5_QUESTION = 'Does this figure show "{}"? Please answer yes or no.'
QUESTION = 'Does this figure show "{}"? Please answer Yes or No.'
ANSWER = "Yes"
CLIP_T5_MODELS = ("clip-flant5-xxl", "clip-flant5-xl")
DEFAULT_MODEL = "clip-flant5-xxl"


def build_vqascore(model: str, *, base_url: str | None = None, device: str | None = None, top_logprobs: int = 2,
                   concurrency: int = 8, timeout: float = 120.0) -> Any:
    """The VQAScore backend a model spec names (fails here, before any render, when it cannot load)."""
    if model in CLIP_T5_MODELS or model.startswith("clip-flant5:"):
        from mllm_guidance.eval.clip_flant5 import ClipFlanT5VqaScore

        return ClipFlanT5VqaScore(model, device=device)
    if model.startswith("transformers:"):
        return LocalVlmVqaScore(model.removeprefix("transformers:"), device=device)
    if model.startswith("openai:"):
        return ApiVqaScore(model.removeprefix("openai:"), base_url=base_url, top_logprobs=top_logprobs,
                           concurrency=concurrency, timeout=timeout)
    raise InputError(f"VQAScore model {model!r}: give {' or '.join(CLIP_T5_MODELS)}, transformers:<id or path>, "
                     "or openai:<model> (with --vqascore-base-url for an OpenAI-compatible server)")


class VqaScorer:
    """VQAScore on one backend: the bench scorer ``vqascore`` (column ``vqascore``)."""

    name = "vqascore"
    keys = ("vqascore",)

    def __init__(self, model: str = DEFAULT_MODEL, **options: Any) -> None:
        self.backend = build_vqascore(model, **options)

    @property
    def settings(self) -> dict[str, Any]:
        return {"reference": "VQAScore (linzhiqiu/t2v_metrics)", **self.backend.settings}

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        return [metrics for metrics, _ in self.score_items(items)]

    def score_items(self, items: Sequence[ScoreItem]) -> list[tuple[dict[str, float], dict[str, Any]]]:
        probabilities = self.backend.p_yes([i.image for i in items], [i.prompt for i in items])
        return [({"vqascore": p}, {}) for p in probabilities]


class LocalVlmVqaScore:
    """P(first token of "Yes") from a local VLM's chat template (t2v_metrics' newer wrappers)."""

    def __init__(self, model_id: str, device: str | None = None) -> None:
        from mllm_guidance.backends.local_vlm import load_vlm

        self.model_id = model_id
        self.model, self.processor, self.lock, self.device, self.dtype = load_vlm(model_id, device)
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        ids = tokenizer.encode(ANSWER, add_special_tokens=False)
        if not ids or ids[0] == tokenizer.unk_token_id:
            raise BackendError(f"{model_id}: its vocabulary has no token for {ANSWER!r}; VQAScore needs it")
        self.yes_id = int(ids[0])

    @property
    def settings(self) -> dict[str, Any]:
        return {"way": "transformers VLM, P(first answer token = 'Yes')", "model": self.model_id, "question": QUESTION,
                "compare_with_paper": False}

    def p_yes(self, images: Sequence[Any], texts: Sequence[str]) -> list[float]:
        """One forward pass per (image, text): each prompt alone, so no padding can change an answer."""
        import torch

        out = []
        for image, text in zip(images, texts, strict=True):
            chat = [{"role": "user", "content": [{"type": "image", "image": image.convert("RGB")},
                                                 {"type": "text", "text": QUESTION.format(text)}]}]
            with self.lock, torch.inference_mode():
                inputs = self.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                                            return_dict=True, return_tensors="pt")
                inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
                if "pixel_values" in inputs:
                    inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
                logits = self.model(**inputs).logits[0, -1].float()
            out.append(float(logits.softmax(-1)[self.yes_id]))
        return out


class ApiVqaScore:
    """P("Yes") from an OpenAI-compatible API's first-token log-probabilities (t2v_metrics' GPT route)."""

    def __init__(self, model: str, *, base_url: str | None = None, top_logprobs: int = 2, concurrency: int = 8,
                 timeout: float = 120.0) -> None:
        try:
            import openai
        except ImportError as exc:
            raise BackendError(f"VQAScore through an API needs openai: pip install 'mllm-guidance[openai]' ({exc})") from None
        key = os.environ.get("OPENAI_API_KEY")
        if not key and not base_url:
            raise BackendError("VQAScore with openai:MODEL needs OPENAI_API_KEY, or --vqascore-base-url for a local server")
        self.model, self.base_url, self.top_logprobs, self.concurrency = model, base_url, top_logprobs, concurrency
        self.client = openai.OpenAI(api_key=key or "not-needed", base_url=base_url, timeout=timeout, max_retries=4)

    @property
    def settings(self) -> dict[str, Any]:
        return {"way": "API log-probabilities of the first token", "model": self.model, "base_url": self.base_url,
                "question": QUESTION, "top_logprobs": self.top_logprobs, "compare_with_paper": False}

    def p_yes(self, images: Sequence[Any], texts: Sequence[str]) -> list[float]:
        with ThreadPoolExecutor(max(1, min(self.concurrency, len(images)))) as pool:
            return list(pool.map(self._one, images, texts))

    def _one(self, image: Any, text: str) -> float:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        content = [{"type": "text", "text": QUESTION.format(text)}, {"type": "image_url", "image_url": {"url": url}}]
        try:
            completion = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": content}], logprobs=True,
                top_logprobs=self.top_logprobs, max_tokens=1)
        except Exception as exc:  # the client's own retries are spent: one line naming the model
            raise BackendError(f"VQAScore call to {self.model} failed: {redact_text(str(exc))[:300]}") from None
        return p_yes_from_logprobs(completion, self.model)


def p_yes_from_logprobs(completion: Any, model: str = "the model") -> float:
    """t2v_metrics' reading of the first answer token's top log-probabilities."""
    try:
        first = completion.choices[0].logprobs.content[0]
    except (AttributeError, IndexError, TypeError):
        raise BackendError(f"{model} returned no log-probabilities; VQAScore through an API needs a server that "
                           "supports logprobs / top_logprobs") from None
    yes = no = None
    for candidate in first.top_logprobs or []:
        token = candidate.token.strip().lower()
        if token == "yes":  # as theirs: a later candidate of the same text overwrites an earlier one
            yes = candidate.logprob
        elif token == "no":
            no = candidate.logprob
    if yes is not None:
        return math.exp(yes)
    if no is not None:
        return 1 - math.exp(no)
    return 0.0
