"""EliGen entity control on Qwen-Image: the project's pipeline and attention processor.

The recipe (Zhang et al., "EliGen: Entity-Level Controlled Image Generation with Regional Attention",
2025; DiffSynth-Studio's ``QwenImageUnit_EntityControl`` and ``QwenImageDiT.process_entity_masks``,
read in the ``diffsynth`` 2.1.12 release): every entity's phrase is encoded on its own, with the same
chat template as the prompt, and the transformer's text stream becomes ``[entity 1, ..., entity E,
prompt]``. Joint attention is masked so that

* an entity's tokens and the image tokens of its mask see each other (the prompt counts as an entity
  whose mask is the whole image),
* no text block sees another text block,
* image tokens see all image tokens.

Each text block has its own rotary positions, each starting where the prompt's start (after the image
grid), as if it were the only text. The entity masks and the attention mask are ``layout_pipelines/eligen.py``'s.

How it rides on diffusers' ``QwenImageTransformer2DModel.forward`` (no copied model code): the
concatenated text goes in as ``encoder_hidden_states`` (the text norm and projection act per token),
and ``EliGenAttnProcessor`` replaces the text's rotary positions and the joint mask through
``attention_kwargs``; without them it defers to diffusers' own processor, so the same transformer
renders plain Qwen-Image. Requests in one batch may have different entities: text blocks are padded
to a common length and padding is masked out of every other token's view.

The LoRA: EliGen-V2 is a LoRA on the transformer, fused into its weights (``eligen.fuse_lora``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import QwenImagePipeline
from diffusers.models.transformers.transformer_qwenimage import apply_rotary_emb_qwen
from diffusers.pipelines.qwenimage.pipeline_output import QwenImagePipelineOutput
from diffusers.pipelines.qwenimage.pipeline_qwenimage import calculate_shift, retrieve_timesteps

from mllm_guidance.backends.latent_blend import prepare_qwen_repair, wants_repair
from mllm_guidance.backends.layout_pipelines.eligen import eligen_attention_mask, entity_token_masks, fuse_lora

#: (phrase, normalized [x1, y1, x2, y2]) for one entity.
Entity = tuple[str, Sequence[float]]


@dataclass
class EliGenContext:
    """What the processors need during an entity-controlled call (``attention_kwargs['eligen']``)."""

    mask: torch.Tensor  # (B, 1, T + N, T + N) bool
    text_freqs: torch.Tensor  # (T, head_dim / 2) complex: each text block's own rotary positions


class EliGenAttnProcessor:
    """Joint attention with the entity mask and per-block text positions; outside entity control it
    defers to the block's own processor."""

    def __init__(self, fallback: Any) -> None:
        self.fallback = fallback

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 encoder_hidden_states_mask: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 image_rotary_emb: Any = None, eligen: EliGenContext | None = None) -> Any:
        if eligen is None:
            return self.fallback(attn, hidden_states, encoder_hidden_states, encoder_hidden_states_mask, attention_mask,
                                 image_rotary_emb)
        head_dim = attn.inner_dim // attn.heads

        def project(x: torch.Tensor, linear: Any, norm: Any, freqs: torch.Tensor | None) -> torch.Tensor:
            x = linear(x).unflatten(-1, (-1, head_dim))
            if norm is not None:
                x = norm(x)
            return apply_rotary_emb_qwen(x, freqs, use_real=False) if freqs is not None else x

        image_freqs, text_freqs = image_rotary_emb[0], eligen.text_freqs
        query = torch.cat([project(encoder_hidden_states, attn.add_q_proj, attn.norm_added_q, text_freqs),
                           project(hidden_states, attn.to_q, attn.norm_q, image_freqs)], 1)
        key = torch.cat([project(encoder_hidden_states, attn.add_k_proj, attn.norm_added_k, text_freqs),
                         project(hidden_states, attn.to_k, attn.norm_k, image_freqs)], 1)
        value = torch.cat([project(encoder_hidden_states, attn.add_v_proj, None, None),
                           project(hidden_states, attn.to_v, None, None)], 1)
        joint = F.scaled_dot_product_attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2),
                                               attn_mask=eligen.mask)
        joint = joint.transpose(1, 2).flatten(2, 3).to(query.dtype)
        texts = encoder_hidden_states.shape[1]
        image_out = attn.to_out[0](joint[:, texts:].contiguous())
        if len(attn.to_out) > 1:
            image_out = attn.to_out[1](image_out)
        return image_out, attn.to_add_out(joint[:, :texts].contiguous())


def install_eligen_processors(transformer: Any) -> None:
    """Wrap every block's attention processor once (idempotent)."""
    for block in transformer.transformer_blocks:
        if not isinstance(block.attn.processor, EliGenAttnProcessor):
            block.attn.set_processor(EliGenAttnProcessor(block.attn.processor))


class EliGenQwenImagePipeline(QwenImagePipeline):
    """Qwen-Image with EliGen entity control: ``entities`` is a list of (phrase, normalized [x1, y1, x2,
    y2]) for one prompt, or one such list per prompt when ``prompt`` is a list. Classifier-free guidance
    runs when ``negative_prompt`` is given and ``true_cfg_scale > 1``; ``cfg_normalize`` rescales the
    guided prediction to the conditional one's norm, as diffusers' ``QwenImagePipeline`` does (off:
    DiffSynth-Studio's plain guidance). ``eligen_on_negative`` also masks the negative pass, with the
    negative prompt in every entity's place (DiffSynth's ``eligen_enable_on_negative``). With
    ``repair_image`` and ``repair_boxes`` only the union of those boxes is repainted
    (``backends.latent_blend.FlowBlend``).

        >>> pipe = EliGenQwenImagePipeline.from_pretrained("Qwen/Qwen-Image", torch_dtype=torch.bfloat16)
        >>> pipe.fuse_eligen_lora("DiffSynth-Studio/Qwen-Image-EliGen-V2")
        >>> image = pipe("a cat and a dog on a sofa", [("a cat", [0.05, 0.3, 0.5, 0.9]), ("a dog", [0.5, 0.3, 0.95, 0.9])],
        ...              negative_prompt="", num_inference_steps=30).images[0]
    """

    def fuse_eligen_lora(self, source: str, scale: float = 1.0, weight_name: str = "model.safetensors") -> int:
        """Fuse a LoRA file (a ``.safetensors`` path, a folder holding ``weight_name``, or a hub repository)."""
        from pathlib import Path

        from safetensors.torch import load_file

        path = Path(source)
        if path.is_dir():
            path = path / weight_name
        elif not path.is_file():
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(source, weight_name))
        return fuse_lora(self.transformer, load_file(str(path)), scale)

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], entities: Sequence[Entity] | Sequence[Sequence[Entity]] = (), *,
                 negative_prompt: str | None = None, true_cfg_scale: float = 4.0, cfg_normalize: bool = True,
                 eligen_on_negative: bool = False, height: int | None = None, width: int | None = None,
                 num_inference_steps: int = 30, generator: Any = None, latents: torch.Tensor | None = None,
                 max_sequence_length: int = 512, output_type: str = "pil", return_dict: bool = True,
                 repair_image: Any = None, repair_boxes: Sequence[Sequence[float]] | None = None) -> Any:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        samples = [list(entities)] if isinstance(prompt, str) else [list(e) for e in entities] if entities else [[] for _ in prompts]
        if len(samples) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(samples)} entity lists: give one list per prompt")
        if any(samples) and not all(samples):
            raise ValueError("some prompts have entities and some have none: render those separately")
        height = height or self.default_sample_size * self.vae_scale_factor
        width = width or self.default_sample_size * self.vae_scale_factor
        cell = self.vae_scale_factor * 2
        if height % cell or width % cell:
            raise ValueError(f"height and width must be multiples of {cell}, got {width}x{height}")
        install_eligen_processors(self.transformer)
        self._guidance_scale = None
        self._attention_kwargs = {}
        self._interrupt = False
        device = self._execution_device
        batch = len(prompts)
        embeds, embeds_mask = self.encode_prompt(prompts, device=device, max_sequence_length=max_sequence_length)
        guided = true_cfg_scale > 1 and negative_prompt is not None
        if guided:
            negative, negative_mask = self.encode_prompt([negative_prompt] * batch, device=device,
                                                         max_sequence_length=max_sequence_length)
        latents = self.prepare_latents(batch, self.transformer.config.in_channels // 4, height, width, embeds.dtype, device,
                                       generator, latents)
        blend = None
        if wants_repair(repair_image, repair_boxes):
            blend = prepare_qwen_repair(self, repair_image, repair_boxes, latents, width, height)
        img_shapes = [[(1, height // cell, width // cell)]] * batch
        positive = (embeds, embeds_mask, None)
        negative_inputs = (negative, negative_mask, None) if guided else None
        if samples[0]:
            masks = [entity_token_masks([box for _, box in s], height, width, self.vae_scale_factor) for s in samples]
            slots = self._encode_entities([[phrase for phrase, _ in s] for s in samples], device, max_sequence_length)
            positive = self._entity_inputs(slots, embeds, embeds_mask, masks, img_shapes, device)
            if guided and eligen_on_negative:
                same = [(negative, negative_mask, [len(s) > i for s in samples]) for i in range(len(slots))]
                negative_inputs = self._entity_inputs(same, negative, negative_mask, masks, img_shapes, device)
        sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
        config = self.scheduler.config
        mu = calculate_shift(latents.shape[1], config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                             config.get("base_shift", 0.5), config.get("max_shift", 1.15))
        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device, sigmas=sigmas, mu=mu)
        self._num_timesteps = len(timesteps)
        self.scheduler.set_begin_index(0)
        for i, t in enumerate(timesteps):
            self._current_timestep = t
            timestep = t.expand(batch).to(latents.dtype) / 1000
            noise = self._predict(latents, timestep, img_shapes, positive)
            if guided:
                uncond = self._predict(latents, timestep, img_shapes, negative_inputs)
                combined = uncond + true_cfg_scale * (noise - uncond)
                if cfg_normalize:
                    combined = combined * (torch.norm(noise, dim=-1, keepdim=True) / torch.norm(combined, dim=-1, keepdim=True))
                noise = combined
            latents = self.scheduler.step(noise, t, latents, return_dict=False)[0]
            if blend is not None:
                latents = blend(self, i, t, {"latents": latents})["latents"]
        self._current_timestep = None
        if output_type == "latent":
            image = latents
        else:
            unpacked = self._unpack_latents(latents, height, width, self.vae_scale_factor).to(self.vae.dtype)
            z_dim = self.vae.config.z_dim
            mean = torch.tensor(self.vae.config.latents_mean).view(1, z_dim, 1, 1, 1).to(unpacked.device, unpacked.dtype)
            std = torch.tensor(self.vae.config.latents_std).view(1, z_dim, 1, 1, 1).to(unpacked.device, unpacked.dtype)
            image = self.vae.decode(unpacked * std + mean, return_dict=False)[0][:, :, 0]
            image = self.image_processor.postprocess(image, output_type=output_type)
        self.maybe_free_model_hooks()
        return QwenImagePipelineOutput(images=image) if return_dict else (image,)

    def _predict(self, latents: torch.Tensor, timestep: torch.Tensor, img_shapes: list, inputs: tuple) -> torch.Tensor:
        text, text_mask, context = inputs
        return self.transformer(hidden_states=latents, timestep=timestep, encoder_hidden_states=text,
                                encoder_hidden_states_mask=None if context is not None else text_mask, img_shapes=img_shapes,
                                attention_kwargs={"eligen": context} if context is not None else {}, return_dict=False)[0]

    def _encode_entities(self, phrases: list[list[str]], device: Any, max_sequence_length: int) -> list[tuple]:
        """Per entity slot: (embeds (B, L, C), mask (B, L) or None, which samples have an entity there).
        A sample with fewer entities gets an empty phrase in the free slots, masked out entirely."""
        slots = []
        for i in range(max(len(p) for p in phrases)):
            present = [len(p) > i for p in phrases]
            texts = [p[i] if len(p) > i else "" for p in phrases]
            embeds, mask = self.encode_prompt(texts, device=device, max_sequence_length=max_sequence_length)
            slots.append((embeds, mask, present))
        return slots

    def _entity_inputs(self, slots: list[tuple], embeds: torch.Tensor, embeds_mask: torch.Tensor | None,
                       masks: list[torch.Tensor], img_shapes: list, device: Any) -> tuple:
        """(text [entities..., prompt], None, EliGenContext) for the transformer."""
        blocks = [s[0] for s in slots] + [embeds]
        lengths = [b.shape[1] for b in blocks]
        batch = embeds.shape[0]

        def valid(mask: torch.Tensor | None, length: int) -> list[int]:
            return mask.sum(1).tolist() if mask is not None else [length] * batch

        valid_lens = [valid(m, b.shape[1]) for b, m, _ in slots] + [valid(embeds_mask, embeds.shape[1])]
        for i, (_, _, present) in enumerate(slots):
            valid_lens[i] = [n if here else 0 for n, here in zip(valid_lens[i], present, strict=True)]
        attention = []
        for b in range(batch):
            sample_masks = masks[b]
            padded = torch.zeros(len(slots), sample_masks.shape[1], dtype=torch.bool)
            padded[: sample_masks.shape[0]] = sample_masks
            attention.append(eligen_attention_mask(padded, lengths, [v[b] for v in valid_lens]))
        freqs = torch.cat([self.transformer.pos_embed(img_shapes, device=device, max_txt_seq_len=n)[1] for n in lengths])
        context = EliGenContext(mask=torch.stack(attention)[:, None].to(device), text_freqs=freqs)
        return torch.cat(blocks, 1), None, context
