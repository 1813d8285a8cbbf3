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

from mllm_guidance.backends.latent_blend import chain, prepare_repair, wants_repair
from mllm_guidance.backends.layout_pipelines.gligen_grounding import (
    fusers_off_after,
    grounding_rows,
    per_sample,
    position_inputs,
    set_fusers,
)


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
        set_fusers(self.unet, enabled)

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
        samples = per_sample(gligen_phrases, gligen_boxes, prompts)
        if not any(phrases for phrases, _ in samples):
            if blend is not None:
                common["callback_on_step_end"] = chain(common.get("callback_on_step_end"), blend)
            return super().__call__(prompt, **common)
        if not all(phrases for phrases, _ in samples):
            raise ValueError("some prompts have boxes and some have none: render those separately")
        device = self._execution_device
        rows = [sample for sample in samples for _ in range(num_images_per_prompt)]  # SDXL's sample order
        embeds, box_t, masks = grounding_rows(rows, lambda phrases: self.encode_phrases(phrases, device),
                                              self.unet.config.cross_attention_dim, device, self.unet.dtype)
        grounding = position_inputs(embeds, box_t, masks, guided=guidance_scale > 1.0)
        grounded = int(gligen_scheduled_sampling_beta * num_inference_steps)
        attention_kwargs = {**(common.pop("cross_attention_kwargs", None) or {}), "gligen": grounding}
        common["callback_on_step_end"] = chain(fusers_off_after(self.unet, grounded), common.get("callback_on_step_end"), blend)
        self.set_fusers(grounded > 0)
        try:
            return super().__call__(prompt, cross_attention_kwargs=attention_kwargs, **common)
        finally:
            self.set_fusers(True)
