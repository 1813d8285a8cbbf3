"""Image-text scorers for the benchmark. Each loads its model once and scores in batches.

- ``mllm``: the reason rubric's 1..5 judge with a chosen MLLM (it can differ from the guide's),
  reported as score / 5. The thesis's headline metric (Kendall tau 0.58 against a human rater).
- ``clipscore``: CLIP image-text cosine with transformers' CLIP (default
  ``openai/clip-vit-large-patch14``), as raw cosine (``clipscore_cos``, T2I-CompBench's form) and
  as Hessel et al.'s 2.5 * max(cos, 0) (``clipscore``).
- ``blip-vqa`` and ``blip-clip``: in ``eval.blip``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mllm_guidance.errors import BackendError, InputError


@dataclass(frozen=True)
class ScoreItem:
    prompt: str
    image: Any  # PIL image


class Scorer(Protocol):
    name: str

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        """One dict of metric values per item, in order."""
        ...


class MllmJudge:
    """The reason rubric with any chat model; unreadable answers are retried, then left unscored."""

    name = "mllm"

    def __init__(self, mllm: Any, *, concurrency: int = 8, parse_retries: int = 2, mllm_options: dict[str, Any] | None = None) -> None:
        from mllm_guidance.backends.mllm import resolve_mllm
        from mllm_guidance.prompts.templates import load_templates

        self.model = resolve_mllm(mllm, **(mllm_options or {}))
        self.templates = load_templates()
        self.concurrency, self.parse_retries = concurrency, parse_retries

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        return asyncio.run(self.ascore(items))

    async def ascore(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        from langchain_core.messages import AIMessage, HumanMessage

        from mllm_guidance.backends.replay import STEP_KEY
        from mllm_guidance.errors import ScoreParseError
        from mllm_guidance.nodes.ask import message_text
        from mllm_guidance.prompts.parse import parse_score
        from mllm_guidance.store import png_bytes

        gate = asyncio.Semaphore(self.concurrency)

        async def one(item: ScoreItem) -> dict[str, float]:
            messages = self.templates.messages("reason", item.prompt, image_png=png_bytes(item.image))
            async with gate:
                for _ in range(self.parse_retries + 1):
                    reply = await self.model.ainvoke(messages, config={"metadata": {STEP_KEY: "reason"}})
                    text = message_text(reply)
                    try:
                        return {"mllm": parse_score(text) / 5}
                    except ScoreParseError as exc:
                        messages = messages + [AIMessage(content=text), HumanMessage(
                            content=f"Your answer could not be used: {exc}. Answer again in the format of the examples.")]
            return {}

        return list(await asyncio.gather(*(one(item) for item in items)))


class ClipScorer:
    name = "clipscore"

    def __init__(self, model: str = "openai/clip-vit-large-patch14", *, device: str | None = None, batch_size: int = 16) -> None:
        self.clip, self.processor, self.device = load_clip(model, device)
        self.batch_size = batch_size

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        out: list[dict[str, float]] = []
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            images = embed_images(self.clip, self.processor, [i.image for i in batch], self.device)
            texts = embed_texts(self.clip, self.processor, [i.prompt for i in batch], self.device)
            for cos in (images * texts).sum(-1).tolist():
                out.append({"clipscore_cos": cos, "clipscore": 2.5 * max(cos, 0.0)})
        return out


def load_scoring_model(what: str, model: str, device: str | None, model_class: str, processor_class: str) -> tuple[Any, Any, str]:
    """(model, processor, device) of a transformers scoring model, loaded once, in fp32, in eval mode."""
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as exc:
        raise BackendError(f"{what} scoring needs torch and transformers: pip install 'mllm-guidance[eval]' ({exc})") from None
    from mllm_guidance.backends.diffusers_base import quiet
    from mllm_guidance.backends.torch_device import pick_device

    device, _ = pick_device(device, "float32")
    try:
        with quiet():
            net = getattr(transformers, model_class).from_pretrained(model).to(device).eval()
            processor = getattr(transformers, processor_class).from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot load {what} {model!r}: {str(exc).splitlines()[0]}; give a local directory without network") from None
    return net, processor, device


def load_clip(model: str, device: str | None) -> tuple[Any, Any, str]:
    return load_scoring_model("CLIP", model, device, "CLIPModel", "CLIPProcessor")


def embed_images(clip: Any, processor: Any, images: Sequence[Any], device: str) -> Any:
    import torch

    with torch.inference_mode():
        pixels = processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"].to(device)
        features = clip.get_image_features(pixel_values=pixels)
        features = getattr(features, "pooler_output", features)
    return torch.nn.functional.normalize(features.float(), dim=-1)


def embed_texts(clip: Any, processor: Any, texts: Sequence[str], device: str) -> Any:
    import torch

    with torch.inference_mode():
        tokens = processor.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(device)
        features = clip.get_text_features(**tokens)
        features = getattr(features, "pooler_output", features)
    return torch.nn.functional.normalize(features.float(), dim=-1)


SCORERS = ("mllm", "clipscore", "blip-vqa", "blip-clip")


def build_scorers(names: Sequence[str], *, judge_mllm: Any = None, clip_model: str | None = None,
                  blip_model: str | None = None, mllm_options: dict[str, Any] | None = None) -> list[Any]:
    from mllm_guidance.eval.blip import BlipClipScorer, BlipVqaScorer

    clip = {"clip_model": clip_model} if clip_model else {}
    scorers: list[Any] = []
    for name in names:
        if name == "mllm":
            scorers.append(MllmJudge(judge_mllm, mllm_options=mllm_options))
        elif name == "clipscore":
            scorers.append(ClipScorer(clip_model) if clip_model else ClipScorer())
        elif name == "blip-vqa":
            scorers.append(BlipVqaScorer(blip_model) if blip_model else BlipVqaScorer())
        elif name == "blip-clip":
            scorers.append(BlipClipScorer(blip_model, **clip) if blip_model else BlipClipScorer(**clip))
        else:
            raise InputError(f"unknown scorer {name!r}; available: {', '.join(SCORERS)}")
    return scorers


def score_records(out: Any, records: list[dict[str, Any]], scorers: Sequence[Any], batch: int = 32) -> list[dict[str, Any]]:
    """Add every scorer's metrics to the ok records that lack them (idempotent, resumable)."""
    from pathlib import Path

    from PIL import Image

    keys = {"mllm": ["mllm"], "clipscore": ["clipscore", "clipscore_cos"], "blip-vqa": ["blip_vqa"], "blip-clip": ["blip_clip"]}
    for scorer in scorers:
        todo = [r for r in records if r.get("status") == "ok" and not set(keys.get(scorer.name, [scorer.name])) <= set(r.get("metrics") or {})]
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            items = [ScoreItem(r["prompt"], Image.open(Path(out) / r["image"]).convert("RGB")) for r in chunk]
            for record, values in zip(chunk, scorer.score(items), strict=True):
                record.setdefault("metrics", {}).update(values)
    return records
