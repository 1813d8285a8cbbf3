"""``transformers:<hub id or path>``: a vision-language model in this process, as a LangChain chat model.

Any model that ``AutoModelForImageTextToText`` and ``AutoProcessor`` load and whose processor has
a chat template works: Gemma-3 (``google/gemma-3-4b-it`` / ``-12b-it`` / ``-27b-it``; the thesis
used 27B), Qwen2.5-VL (``Qwen/Qwen2.5-VL-7B-Instruct``) and others. Standard image content blocks
go in, text comes out, with token usage. Weights load once per process and are shared by every
model object asking for the same (id, device, dtype); generation is greedy and serialized per model.

Device and dtype are chosen automatically (CUDA: bf16 where supported, else fp16; Apple MPS: fp16;
CPU: fp32) and can be overridden. Gemma weights are gated on the Hugging Face hub: accept the
license on the model page and set HF_TOKEN, or give a local directory.
"""

from __future__ import annotations

import base64
import io
import threading
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from mllm_guidance.backends.torch_device import pick_device
from mllm_guidance.errors import BackendError
from mllm_guidance.redact import redact_text

_loaded: dict[tuple[str, str, str], tuple[Any, Any, threading.Lock]] = {}
_load_lock = threading.Lock()


def load_vlm(model_id: str, device: str | None = None, dtype: str | None = None) -> tuple[Any, Any, threading.Lock, str, str]:
    """The (model, processor) for ``model_id``, loaded once per process."""
    try:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise BackendError(f"the transformers MLLM needs torch and transformers: pip install 'mllm-guidance[local]' ({exc})") from None
    device, dtype = pick_device(device, dtype)
    key = (model_id, device, dtype)
    with _load_lock:
        if key not in _loaded:
            verbosity = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()  # keep loading chatter (and fallback notices) out of the user's face
            try:
                processor = AutoProcessor.from_pretrained(model_id)
                model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=getattr(torch, dtype))
            except (OSError, ValueError) as exc:
                raise BackendError(
                    f"cannot load {model_id!r}: {redact_text(str(exc).splitlines()[0])}. Without network, give a "
                    "local directory; for gated models (Gemma) accept the license on the model page and set HF_TOKEN"
                ) from None
            finally:
                hf_logging.set_verbosity(verbosity)
            if getattr(processor, "chat_template", None) is None:
                raise BackendError(f"{model_id!r} has no chat template; use an instruction-tuned model (e.g. *-it)")
            _loaded[key] = (model.to(device).eval(), processor, threading.Lock())
        model, processor, lock = _loaded[key]
    return model, processor, lock, device, dtype


class LocalVLMChatModel(BaseChatModel):
    """A transformers image-text-to-text model behind LangChain's chat interface."""

    model_id: str
    device: str
    dtype: str
    max_new_tokens: int = 512
    _model: Any = PrivateAttr(default=None)
    _processor: Any = PrivateAttr(default=None)
    _lock: Any = PrivateAttr(default=None)

    @classmethod
    def load(cls, model_id: str, *, device: str | None = None, dtype: str | None = None, max_new_tokens: int = 512) -> LocalVLMChatModel:
        model, processor, lock, device, dtype = load_vlm(model_id, device, dtype)
        obj = cls(model_id=model_id, device=device, dtype=dtype, max_new_tokens=max_new_tokens)
        obj._model, obj._processor, obj._lock = model, processor, lock
        return obj

    @property
    def _llm_type(self) -> str:
        return "transformers-vlm"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "device": self.device, "dtype": self.dtype}

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        import torch

        chat = [to_chat_turn(m) for m in messages]
        with self._lock, torch.inference_mode():
            inputs = self._processor.apply_chat_template(
                chat, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
            )
            inputs = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(self._model.dtype)
            out = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = out[0][prompt_len:]
        text = self._processor.decode(new_tokens, skip_special_tokens=True)
        for s in stop or []:
            text = text.split(s)[0]
        message = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": int(prompt_len),
                "output_tokens": int(new_tokens.shape[0]),
                "total_tokens": int(prompt_len + new_tokens.shape[0]),
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def to_chat_turn(message: BaseMessage) -> dict[str, Any]:
    """A LangChain message as a transformers chat-template turn, images decoded to PIL."""
    role = {"human": "user", "ai": "assistant", "system": "system"}.get(message.type, "user")
    content = message.content
    if isinstance(content, str):
        return {"role": role, "content": [{"type": "text", "text": content}]}
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append({"type": "text", "text": block})
        elif block.get("type") == "text":
            parts.append({"type": "text", "text": block["text"]})
        elif block.get("type") in ("image", "image_url"):
            parts.append({"type": "image", "image": _decode_image(block)})
    return {"role": role, "content": parts}


def _decode_image(block: dict[str, Any]) -> Any:
    from PIL import Image

    data = block.get("base64") or block.get("data")
    if data is None:
        url = block.get("url") or (block.get("image_url") or {}).get("url", "")
        if not url.startswith("data:"):
            raise BackendError("the local MLLM takes images as base64 data, not URLs")
        data = url.split(",", 1)[1]
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    return image.convert("RGB")
