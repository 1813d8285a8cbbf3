"""``StableDiffusionGLIGENPipeline``: Stable Diffusion 1.x/2.x with GLIGEN box grounding, the project's own
pipeline (``backends/gligen.py`` loads and drives it), so that no code of diffusers' ``deprecated``
namespace is needed.

It is diffusers' ``StableDiffusionPipeline`` with GLIGEN's text-box inputs, as diffusers'
``StableDiffusionGLIGENPipeline`` (``pipelines/deprecated/stable_diffusion_gligen``, diffusers 0.42.1)
takes them: ``gligen_phrases`` (one description per box) and ``gligen_boxes`` (normalized
``[x1, y1, x2, y2]``, origin top-left), grounding the first ``gligen_scheduled_sampling_beta`` of the
scheduler's timesteps. A phrase is embedded as the text encoder's pooled output (the same CLIP that
encodes the prompt), at most 30 in GLIGEN's object slots; the unconditional half of classifier-free
guidance is not grounded. On the tiny seeded test model its final latents equal diffusers' class bit
for bit (``tests/backends/test_goldens.py``). Added here: a layout per prompt (lists of lists), and
repair (``repair_image`` / ``repair_boxes``, blended latents); not kept: diffusers'
``gligen_inpaint_image`` (the GLIGEN inpainting checkpoint's input) and the legacy ``callback``.

Checkpoints: ``masterful/gligen-1-4-generation-text-box`` (SD 1.4), ``longlian/igligen-sd2.1-v1.0``
(SD 2.1): diffusers folders whose ``unet`` has ``attention_type="gated"``; ``from_pretrained`` reads
them as they are (their ``model_index.json`` names this class).

Example::

    pipe = StableDiffusionGLIGENPipeline.from_pretrained("masterful/gligen-1-4-generation-text-box",
                                                         torch_dtype=torch.float16).to("cuda")
    image = pipe("a cat and a dog", gligen_phrases=["a cat", "a dog"],
                 gligen_boxes=[[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]],
                 gligen_scheduled_sampling_beta=0.3).images[0]
    # a batch, each prompt on its own layout (lists of lists):
    images = pipe(["a cat", "a dog"], gligen_phrases=[["a cat"], ["a dog"]],
                  gligen_boxes=[[[0.1, 0.1, 0.5, 0.5]], [[0.5, 0.5, 0.9, 0.9]]]).images
    # repair: repaint only inside repair_boxes of an image, grounded on the new layout
    fixed = pipe("a cat and a dog", gligen_phrases=["a cat", "a dog"],
                 gligen_boxes=[[0.5, 0.1, 0.9, 0.5], [0.5, 0.5, 0.9, 0.9]],
                 repair_image=image, repair_boxes=[[0.05, 0.05, 0.95, 0.55]]).images[0]
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import retrieve_timesteps

from mllm_guidance.backends.latent_blend import chain, prepare_repair, wants_repair
from mllm_guidance.backends.layout_pipelines.gligen_grounding import (
    fusers_off_after,
    grounding_rows,
    per_sample,
    position_inputs,
    set_fusers,
)


class StableDiffusionGLIGENPipeline(StableDiffusionPipeline):
    """Stable Diffusion with GLIGEN box grounding: ``gligen_phrases`` / ``gligen_boxes`` (normalized
    corners) ground the first ``gligen_scheduled_sampling_beta`` of the timesteps. Without boxes it is
    plain Stable Diffusion on the same components (a gated UNet skips its fusers). With
    ``repair_image`` and ``repair_boxes`` (normalized corners) only the union of those boxes is
    repainted: the latents outside it are the image's, noised to each step (``backends.latent_blend``)."""

    @torch.no_grad()
    def encode_phrases(self, phrases: list[str], device: Any) -> Any:
        """Each phrase's pooled text embedding, as diffusers' GLIGEN pipeline embeds it (padded to the longest
        phrase, which keeps the numbers bit-identical to it; cut at the tokenizer's limit, where it raises)."""
        tokens = self.tokenizer(phrases, padding=True, truncation=True, max_length=self.tokenizer.model_max_length,
                                return_tensors="pt").to(device)
        return self.text_encoder(**tokens).pooler_output

    def set_fusers(self, enabled: bool) -> None:
        set_fusers(self.unet, enabled)

    @torch.no_grad()
    def __call__(self, prompt: Any = None, *, gligen_phrases: list[str] | list[list[str]] | None = None,
                 gligen_boxes: list[list[float]] | list[list[list[float]]] | None = None,
                 gligen_scheduled_sampling_beta: float = 0.3, num_inference_steps: int = 50, guidance_scale: float = 7.5,
                 num_images_per_prompt: int = 1, repair_image: Any = None, repair_boxes: list[list[float]] | None = None,
                 **kwargs: Any) -> Any:
        if prompt is None and kwargs.get("prompt_embeds") is not None:
            prompts = kwargs["prompt_embeds"].shape[0]
        else:
            prompts = 1 if isinstance(prompt, str) or prompt is None else len(prompt)
        dtype = self.text_encoder.dtype if self.text_encoder is not None else self.unet.dtype
        blend = None
        if wants_repair(repair_image, repair_boxes):
            size = self.unet.config.sample_size * self.vae_scale_factor
            height, width = kwargs.get("height") or size, kwargs.get("width") or size
            kwargs["latents"], blend = prepare_repair(self, repair_image, repair_boxes, kwargs.get("generator"),
                                                      prompts * num_images_per_prompt, width, height, dtype)
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
        rows = [sample for sample in samples for _ in range(num_images_per_prompt)]  # SD's sample order
        embeds, box_t, masks = grounding_rows(rows, lambda phrases: self.encode_phrases(phrases, device),
                                              self.unet.config.cross_attention_dim, device, dtype)
        grounding = position_inputs(embeds, box_t, masks, guided=guidance_scale > 1.0)
        # grounded steps: the first beta of the timesteps, as many as this call's loop will run
        timesteps, _ = retrieve_timesteps(self.scheduler, num_inference_steps, device, kwargs.get("timesteps"),
                                          kwargs.get("sigmas"))
        grounded = int(gligen_scheduled_sampling_beta * len(timesteps))
        attention_kwargs = {**(common.pop("cross_attention_kwargs", None) or {}), "gligen": grounding}
        common["callback_on_step_end"] = chain(fusers_off_after(self.unet, grounded), common.get("callback_on_step_end"), blend)
        self.set_fusers(grounded > 0)
        try:
            return super().__call__(prompt, cross_attention_kwargs=attention_kwargs, **common)
        finally:
            self.set_fusers(True)
