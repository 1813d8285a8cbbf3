"""CLIP-FlanT5, the VQAScore model of Lin et al. 2024, loaded from its published checkpoint with
transformers' T5 and CLIP (t2v_metrics' own model class is not a transformers class).

Reference: linzhiqiu/t2v_metrics @ 10d549b (Apache-2.0), the last commit that ships it:
``t2v_metrics/models/vqascore_models/clip_t5_model.py`` (``CLIPT5Model.forward``),
``clip_t5/model/language_model/clip_t5.py`` (``CLIPT5ForConditionalGeneration``),
``clip_t5/model/multimodal_encoder/clip_encoder.py``, ``clip_t5/model/multimodal_projector/builder.py``
and ``mm_utils.py``. What is the same:

- weights ``zhiqiulin/clip-flant5-xxl`` (or ``-xl``), a T5 whose checkpoint config has ``model_type``
  ``clip_t5``, ``mm_vision_tower`` (``openai/clip-vit-large-patch14-336``), ``mm_hidden_size`` and
  ``mm_projector_type`` (``mlp2x_gelu``: Linear, GELU, Linear); tokenizer ``google/flan-t5-xxl`` (``-xl``),
  ``model_max_length`` 2048;
- the image padded to a square with the processor's mean colour (``expand2square``), then CLIP's
  preprocessing; features of the vision tower's second-to-last layer without the CLS token,
  projected into T5's width and put where the prompt says ``<image>``;
- the prompt ``SYSTEM " USER: <image>\\n" question " ASSISTANT: "`` (``t5_chat``) with the question
  'Does this figure show "{text}"? Please answer yes or no.', each text chunk tokenized on its own
  (so each ends in ``</s>``, as ``t5_tokenizer_image_token`` does); labels: the tokens of "Yes"
  (``▁Yes``, ``</s>``); the score is exp(-mean cross-entropy over the labels), i.e. the geometric
  mean of P(Yes) and P(</s> | Yes), not P(Yes) alone;
- a batch pads the prompts on the right and masks the padding, as theirs.

Differences: transformers 5 has one (Rust) T5 tokenizer where theirs asks for the slow
SentencePiece one (``use_fast=False``; the ids agree on plain text); theirs runs the whole model in
bf16 under CUDA autocast, here fp32 unless ``dtype`` says otherwise (bf16 on CUDA reproduces
theirs); the vision tower's weights always come from ``mm_vision_tower`` (theirs builds the tower from
there and then loads the checkpoint, whose copy, if it holds one, is of that frozen tower: assumed,
not checked). Not verified here against the real checkpoint (no model hub).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from mllm_guidance.backends.diffusers_base import quiet
from mllm_guidance.errors import BackendError

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the user's questions.")
IMAGE_TOKEN = "<image>"
QUESTION = 'Does this figure show "{}"? Please answer yes or no.'
ANSWER = "Yes"
MODELS = {"clip-flant5-xxl": ("zhiqiulin/clip-flant5-xxl", "google/flan-t5-xxl"),
          "clip-flant5-xl": ("zhiqiulin/clip-flant5-xl", "google/flan-t5-xl")}
CONTEXT_LEN = 2048

_LOADED: dict[tuple[str, str, str, str], tuple[Any, Any, Any]] = {}
_LOCK = threading.Lock()


def chat_prompt(text: str) -> str:
    """CLIP-FlanT5's ``t5_chat`` prompt for one text."""
    return f"{SYSTEM} USER: {IMAGE_TOKEN}\n{QUESTION.format(text)} ASSISTANT: "


def load_clip_flant5(model: str, tokenizer: str, device: str, dtype: str) -> tuple[Any, Any, Any]:
    """(model, tokenizer, image processor), once per process. ``model``: a checkpoint directory or hub
    id in CLIP-FlanT5's layout; ``tokenizer``: its FlanT5 tokenizer."""
    key = (model, tokenizer, device, dtype)
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = _load(model, tokenizer, device, dtype)
        return _LOADED[key]


def _load(model_id: str, tokenizer_id: str, device: str, dtype: str) -> tuple[Any, Any, Any]:
    import torch
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, T5Config, T5ForConditionalGeneration

    class ClipT5Config(T5Config):
        model_type = "clip_t5"

    class VisionTower(torch.nn.Module):  # keeps the checkpoint's key prefix vision_tower.vision_tower.*
        def __init__(self, config: Any) -> None:
            super().__init__()
            self.vision_tower = CLIPVisionModel(config)

    class ClipT5(T5ForConditionalGeneration):
        config_class = ClipT5Config

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.vision_tower = VisionTower(CLIPVisionConfig.from_pretrained(config.mm_vision_tower))
            width = config.mm_hidden_size
            self.mm_projector = torch.nn.Sequential(torch.nn.Linear(width, config.d_model), torch.nn.GELU(),
                                                    torch.nn.Linear(config.d_model, config.d_model))

    try:
        with quiet():
            config = ClipT5Config.from_pretrained(model_id)
            if getattr(config, "mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu" or not getattr(config, "mm_vision_tower", None):
                raise BackendError(f"{model_id}: not a CLIP-FlanT5 checkpoint (needs mm_vision_tower and an mlp2x_gelu projector)")
            net = ClipT5.from_pretrained(model_id, config=config)
            # as theirs (CLIPVisionTower.load_model): the frozen tower from mm_vision_tower
            net.vision_tower.vision_tower = CLIPVisionModel.from_pretrained(config.mm_vision_tower)
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_id, model_max_length=CONTEXT_LEN)
            processor = CLIPImageProcessor.from_pretrained(config.mm_vision_tower)
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot load CLIP-FlanT5 {model_id!r}: {str(exc).splitlines()[0]}; give local directories "
                           "without network (--vqascore-model clip-flant5:MODEL_DIR,TOKENIZER_DIR)") from None
    return net.to(device=device, dtype=getattr(torch, dtype)).eval(), tokenizer, processor


class ClipFlanT5VqaScore:
    """VQAScore with CLIP-FlanT5: exp(-mean CE of "Yes</s>") after the t5_chat prompt."""

    def __init__(self, spec: str = "clip-flant5-xxl", *, device: str | None = None, dtype: str | None = None,
                 select_layer: int = -2) -> None:
        from mllm_guidance.backends.torch_device import pick_device

        if spec in MODELS:
            self.model_id, self.tokenizer_id = MODELS[spec]
        else:
            parts = spec.removeprefix("clip-flant5:").split(",")
            self.model_id, self.tokenizer_id = parts[0], (parts[1] if len(parts) > 1 else parts[0])
        self.spec, self.select_layer = spec, select_layer
        self.device, self.dtype = pick_device(device, dtype or "float32")
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise BackendError(f"CLIP-FlanT5 needs torch and transformers: pip install 'mllm-guidance[eval]' ({exc})") from None
        self.model, self.tokenizer, self.processor = load_clip_flant5(self.model_id, self.tokenizer_id, self.device, self.dtype)

    @property
    def settings(self) -> dict[str, Any]:
        return {"way": "CLIP-FlanT5 (t2v_metrics clip_t5_model.py @ 10d549b)", "model": self.model_id,
                "tokenizer": self.tokenizer_id, "question": QUESTION, "dtype": self.dtype, "compare_with_paper": True}

    def pixels(self, images: Sequence[Any]) -> Any:
        """expand2square with the processor's mean colour, then CLIP's preprocessing."""
        from PIL import Image

        fill = tuple(int(x * 255) for x in self.processor.image_mean)
        squares = []
        for image in images:
            image = image.convert("RGB")
            w, h = image.size
            if w != h:
                side = max(w, h)
                canvas = Image.new("RGB", (side, side), fill)
                canvas.paste(image, ((side - w) // 2, (side - h) // 2))
                image = canvas
            squares.append(image)
        return self.processor(images=squares, return_tensors="pt")["pixel_values"]

    def input_ids(self, text: str) -> list[int]:
        """Each chunk around <image> tokenized alone (ending in </s>), -200 marking the image."""
        chunks = [self.tokenizer(chunk).input_ids for chunk in chat_prompt(text).split(IMAGE_TOKEN)]
        ids: list[int] = []
        for i, chunk in enumerate(chunks):
            if i:
                ids.append(-200)
            ids.extend(chunk)
        return ids[:CONTEXT_LEN]

    def p_yes(self, images: Sequence[Any], texts: Sequence[str]) -> list[float]:
        import torch

        model = self.model
        with torch.inference_mode():
            pixels = self.pixels(images).to(self.device, dtype=model.dtype)
            hidden = model.vision_tower.vision_tower(pixels, output_hidden_states=True).hidden_states[self.select_layer][:, 1:]
            features = model.mm_projector(hidden)
            embed = model.get_input_embeddings()
            rows = []
            for k, text in enumerate(texts):
                ids = self.input_ids(text)
                at = ids.index(-200)
                before = embed(torch.tensor(ids[:at], device=self.device))
                after = embed(torch.tensor(ids[at + 1 :], device=self.device))
                rows.append(torch.cat([before, features[k], after]))
            longest = max(r.shape[0] for r in rows)
            inputs = torch.zeros(len(rows), longest, rows[0].shape[-1], dtype=rows[0].dtype, device=self.device)
            mask = torch.zeros(len(rows), longest, dtype=torch.long, device=self.device)
            for k, r in enumerate(rows):
                inputs[k, : r.shape[0]], mask[k, : r.shape[0]] = r, 1
            labels = torch.tensor([self.tokenizer(ANSWER).input_ids] * len(rows), device=self.device)
            logits = model(inputs_embeds=inputs, attention_mask=mask, labels=labels).logits.float()
            ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(-1)
        return (-ce).exp().tolist()
