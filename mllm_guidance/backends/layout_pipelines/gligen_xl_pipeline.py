"""``StableDiffusionXLGLIGENPipeline``: SDXL with GLIGEN box grounding, the project's own pipeline
for IGLIGEN-XL checkpoints (``backends/gligen_xl.py`` loads and drives it).

It is diffusers' ``StableDiffusionXLPipeline`` with two extra inputs, as the authors trained the
adapter: ``gligen_phrases`` (one description per box) and ``gligen_boxes`` (normalized
``[x1, y1, x2, y2]``, origin top-left), grounding the first ``gligen_scheduled_sampling_beta`` of
the denoising steps. A phrase is embedded as CLIP-L's pooled output concatenated with bigG's
projected text embedding (768 + 1280 = 2048, SDXL's cross-attention width); the unconditional half
of classifier-free guidance is not grounded.

Example::

    pipe = load_gligen_xl("jiuntian/gligen-xl-1024", torch_dtype=torch.float16).to("cuda")
    image = pipe("a cat and a dog", gligen_phrases=["a cat", "a dog"],
                 gligen_boxes=[[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]],
                 gligen_scheduled_sampling_beta=0.4).images[0]
    # a batch, each prompt on its own layout (lists of lists):
    images = pipe(["a cat", "a dog"], gligen_phrases=[["a cat"], ["a dog"]],
                  gligen_boxes=[[[0.1, 0.1, 0.5, 0.5]], [[0.5, 0.5, 0.9, 0.9]]]).images
    # repair: repaint only inside repair_boxes of an image, grounded on the new layout (blended latents)
    fixed = pipe("a cat and a dog", gligen_phrases=["a cat", "a dog"],
                 gligen_boxes=[[0.5, 0.1, 0.9, 0.5], [0.5, 0.5, 0.9, 0.9]],
                 repair_image=image, repair_boxes=[[0.05, 0.05, 0.95, 0.55]]).images[0]
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import StableDiffusionXLPipeline
from transformers import CLIPTextModel

from mllm_guidance.backends.grounding import GLIGEN_MAX_OBJECTS
from mllm_guidance.backends.latent_blend import chain, prepare_repair, wants_repair


class StableDiffusionXLGLIGENPipeline(StableDiffusionXLPipeline):
    """SDXL with GLIGEN box grounding: ``gligen_phrases`` / ``gligen_boxes`` (normalized corners)
    ground the first ``gligen_scheduled_sampling_beta`` of the denoising steps. With ``repair_image`` and
    ``repair_boxes`` (normalized corners), only the union of those boxes is repainted: the latents
    outside it are the image's, noised to each step (``backends.latent_blend``)."""

    @torch.no_grad()
    def encode_phrases(self, phrases: list[str], device: Any) -> Any:
        parts = []
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            ids = tokenizer(phrases, padding="max_length", max_length=tokenizer.model_max_length,
                            truncation=True, return_tensors="pt").input_ids.to(device)
            out = encoder(ids)
            parts.append(out.pooler_output if isinstance(encoder, CLIPTextModel) else out.text_embeds)
        return torch.cat(parts, dim=-1)

    def set_fusers(self, enabled: bool) -> None:
        """Switch GLIGEN's gated self-attention layers on or off (scheduled sampling)."""
        for module in self.unet.modules():
            if type(module).__name__ == "GatedSelfAttentionDense":
                module.enabled = enabled

    @torch.no_grad()
    def __call__(self, prompt: Any = None, *, gligen_phrases: list[str] | list[list[str]] | None = None,
                 gligen_boxes: list[list[float]] | list[list[list[float]]] | None = None,
                 gligen_scheduled_sampling_beta: float = 0.4, num_inference_steps: int = 50, guidance_scale: float = 5.0,
                 num_images_per_prompt: int = 1, repair_image: Any = None, repair_boxes: list[list[float]] | None = None,
                 **kwargs: Any) -> Any:
        prompts = 1 if isinstance(prompt, str) or prompt is None else len(prompt)
        blend = None
        if wants_repair(repair_image, repair_boxes):
            size = self.default_sample_size * self.vae_scale_factor
            height, width = kwargs.get("height") or size, kwargs.get("width") or size
            kwargs["latents"], blend = prepare_repair(
                self, repair_image, repair_boxes, kwargs.get("generator"), prompts * num_images_per_prompt, width, height,
                self.text_encoder_2.dtype if self.text_encoder_2 is not None else self.unet.dtype)
        common = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                      num_images_per_prompt=num_images_per_prompt, **kwargs)
        samples = _per_sample(gligen_phrases, gligen_boxes, prompts)
        if not any(phrases for phrases, _ in samples):
            if blend is not None:
                common["callback_on_step_end"] = chain(common.get("callback_on_step_end"), blend)
            return super().__call__(prompt, **common)
        if not all(phrases for phrases, _ in samples):
            raise ValueError("some prompts have boxes and some have none: render those separately")
        device = self._execution_device
        rows = [sample for sample in samples for _ in range(num_images_per_prompt)]  # SDXL's sample order
        embeds, box_t, masks = self.grounding_rows(rows, device, self.unet.dtype)
        if guidance_scale > 1.0:  # the unconditional half (first, as SDXL stacks it) is not grounded
            embeds, box_t = torch.cat([embeds] * 2), torch.cat([box_t] * 2)
            masks = torch.cat([torch.zeros_like(masks), masks])
        grounded = int(gligen_scheduled_sampling_beta * num_inference_steps)

        def after_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            if step + 1 == grounded:
                self.set_fusers(False)
            return tensors

        attention_kwargs = dict(kwargs.pop("cross_attention_kwargs", None) or {})
        attention_kwargs["gligen"] = {"boxes": box_t, "positive_embeddings": embeds, "masks": masks}
        common.pop("cross_attention_kwargs", None)
        self.set_fusers(grounded > 0)
        try:
            common["callback_on_step_end"] = chain(after_step, common.get("callback_on_step_end"), blend)
            return super().__call__(prompt, cross_attention_kwargs=attention_kwargs, **common)
        finally:
            self.set_fusers(True)

    def grounding_rows(self, rows: list[tuple[list[str], list[list[float]]]], device: Any, dtype: Any) -> tuple[Any, Any, Any]:
        """Phrase embeddings, boxes and masks in GLIGEN's 30 slots, one row per sample (a layout
        shared by several rows is embedded once)."""
        width = self.unet.config.cross_attention_dim
        embeds = torch.zeros(len(rows), GLIGEN_MAX_OBJECTS, width, device=device, dtype=dtype)
        box_t = torch.zeros(len(rows), GLIGEN_MAX_OBJECTS, 4, device=device, dtype=dtype)
        masks = torch.zeros(len(rows), GLIGEN_MAX_OBJECTS, device=device, dtype=dtype)
        encoded: dict[tuple[str, ...], Any] = {}
        for i, (phrases, boxes) in enumerate(rows):
            phrases, boxes = phrases[:GLIGEN_MAX_OBJECTS], boxes[:GLIGEN_MAX_OBJECTS]
            if tuple(phrases) not in encoded:
                encoded[tuple(phrases)] = self.encode_phrases(phrases, device).to(dtype)
            n = len(phrases)
            embeds[i, :n] = encoded[tuple(phrases)]
            box_t[i, :n] = torch.tensor(boxes, device=device, dtype=dtype)
            masks[i, :n] = 1
        return embeds, box_t, masks


def _per_sample(phrases: Any, boxes: Any, prompts: int) -> list[tuple[list[str], list[list[float]]]]:
    """One (phrases, boxes) per prompt: a flat list grounds every prompt on the same layout, a list
    of lists gives each prompt its own."""
    phrases, boxes = list(phrases or []), list(boxes or [])
    if phrases and isinstance(phrases[0], (list, tuple)):
        if len(phrases) != prompts or len(boxes) != prompts:
            raise ValueError(f"{prompts} prompts but {len(phrases)} phrase lists and {len(boxes)} box lists: give one per prompt")
        samples = [(list(p), list(b)) for p, b in zip(phrases, boxes, strict=True)]
    else:
        samples = [(phrases, boxes)] * prompts
    for p, b in samples:
        if len(p) != len(b):
            raise ValueError(f"{len(p)} phrases for {len(b)} boxes: give one phrase per box")
    return samples
