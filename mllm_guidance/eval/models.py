"""The one place where the scorers' transformers models are loaded and their embeddings taken.

Every scorer module imports this one (never each other), so a model id, its device and the
"cannot load" message are handled once. A model is loaded once per process and shared: the
``clipscore`` and ``blip-clip`` scorers asking for the same CLIP get the same object. Models run in
fp32 in eval mode; torch and transformers are imported only when a model is asked for.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from mllm_guidance.backends.diffusers_base import quiet
from mllm_guidance.errors import BackendError

_LOADED: dict[tuple[str, str, str, str], tuple[Any, Any, str]] = {}
_LOCK = threading.Lock()


def load_scoring_model(what: str, model: str, device: str | None, model_class: str, processor_class: str) -> tuple[Any, Any, str]:
    """(model, processor, device) of a transformers scoring model, loaded once per process, in
    fp32, in eval mode. ``what`` names the model in errors ("CLIP", "BLIP")."""
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as exc:
        raise BackendError(f"{what} scoring needs torch and transformers: pip install 'mllm-guidance[eval]' ({exc})") from None
    from mllm_guidance.backends.torch_device import pick_device

    device, _ = pick_device(device, "float32")
    key = (model_class, processor_class, model, device)
    with _LOCK:
        if key not in _LOADED:
            try:
                with quiet():
                    net = getattr(transformers, model_class).from_pretrained(model).to(device).eval()
                    processor = getattr(transformers, processor_class).from_pretrained(model)
            except (OSError, ValueError) as exc:
                raise BackendError(f"cannot load {what} {model!r}: {str(exc).splitlines()[0]}; "
                                   "give a local directory without network") from None
            _LOADED[key] = (net, processor, device)
        return _LOADED[key]


def load_clip(model: str, device: str | None) -> tuple[Any, Any, str]:
    return load_scoring_model("CLIP", model, device, "CLIPModel", "CLIPProcessor")


def embed_images(clip: Any, processor: Any, images: Sequence[Any], device: str) -> Any:
    """L2-normalized CLIP image embeddings (the processor's resize, center crop and normalization)."""
    import torch

    with torch.inference_mode():
        pixels = processor(images=[im.convert("RGB") for im in images], return_tensors="pt")["pixel_values"].to(device)
        features = clip.get_image_features(pixel_values=pixels)
        features = getattr(features, "pooler_output", features)
    return torch.nn.functional.normalize(features.float(), dim=-1)


def embed_texts(clip: Any, processor: Any, texts: Sequence[str], device: str) -> Any:
    """L2-normalized CLIP text embeddings; texts longer than the context (77 tokens) are cut,
    keeping the end-of-text token, as OpenAI's ``clip.tokenize(..., truncate=True)`` does."""
    import torch

    with torch.inference_mode():
        tokens = processor.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(device)
        features = clip.get_text_features(**tokens)
        features = getattr(features, "pooler_output", features)
    return torch.nn.functional.normalize(features.float(), dim=-1)
