"""Training-free regional prompting on FLUX: the project's pipeline and attention processor.

The recipe (Chen et al., "Training-free Regional Prompting for Diffusion Transformers", 2024): for the
first ``mask_inject_steps`` denoising steps the transformer runs two text streams side by side.

* the *regional* stream: every region's phrase, encoded on its own, concatenated; joint attention is
  masked so that a phrase's tokens see themselves and their region's image tokens, a region's image
  tokens see their phrase and the image tokens of the same region (image tokens outside every region
  see each other);
* the *base* stream: the whole prompt, with unmasked attention.

The image tokens' attention output is ``(1 - base_ratio) * regional + base_ratio * base``. The mask is
applied in every ``double_inject_interval``-th double-stream block and every
``single_inject_interval``-th single-stream block (1: all of them); the other blocks attend unmasked
within the regional stream, still mixed with the base. After ``mask_inject_steps`` the pipeline is
plain FLUX on the base prompt.

How it rides on diffusers' own ``FluxTransformer2DModel.forward`` (no copied model code): during the
masked steps the transformer is called with the text ``[regional phrases, base prompt]`` and the
image tokens twice, ``[image, image]``. Everything outside attention is per token, so the blocks'
own norms and MLPs process both streams at once; ``RegionalFluxAttnProcessor`` splits the sequence,
computes the two attentions, mixes them, and keeps the copies as the authors' transformer keeps them:
one shared image stream in the double-stream blocks, a separate base image stream in the
single-stream blocks. The first copy's output is the prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import FluxPipeline
from diffusers.models.embeddings import apply_rotary_emb

from mllm_guidance.backends.layout_pipelines import flux_loop
from mllm_guidance.backends.layout_pipelines.regions import Region, per_prompt


def region_token_masks(boxes: Sequence[Sequence[float]], height: int, width: int, cell: int,
                       keep_small: bool = True) -> torch.Tensor:
    """(regions, tokens) bool: the transformer tokens (``cell`` pixels square, row-major) each box covers.

    A token is in a box when the pixel at its centre is (``floor`` of the box's pixel corners rounded,
    as the authors' nearest-exact downsampling of a pixel mask samples it). With ``keep_small`` a box
    too small to hold any token centre keeps the token under its own centre, so no phrase is left
    without pixels (the authors' code leaves it empty)."""
    rows, cols = height // cell, width // cell
    centre_y = torch.arange(rows) * cell + cell // 2
    centre_x = torch.arange(cols) * cell + cell // 2
    masks = torch.zeros(len(boxes), rows, cols, dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        inside_x = (centre_x >= round(x1 * width)) & (centre_x < round(x2 * width))
        inside_y = (centre_y >= round(y1 * height)) & (centre_y < round(y2 * height))
        masks[i] = inside_y[:, None] & inside_x[None, :]
        if keep_small and not masks[i].any():
            row = min(int((y1 + y2) / 2 * height) // cell, rows - 1)
            col = min(int((x1 + x2) / 2 * width) // cell, cols - 1)
            masks[i, row, col] = True
    return masks.flatten(1)


def background_mask(masks: torch.Tensor, boxes: Sequence[Sequence[float]], height: int, width: int,
                    overlap: str = "union") -> torch.Tensor | None:
    """The background prompt's tokens, or None when it is left out.

    ``union`` (the project's): the tokens outside every box, whenever there are any. ``authors``: what
    Regional-Prompting-FLUX's ``infer_flux_regional.py`` computes, ``1 - sum of the box masks`` at pixel
    level, so a token covered by two boxes (value -1, true as a mask) is background too, and the
    background is added only when that sum over all pixels is positive."""
    if overlap == "union":
        uncovered = ~masks.any(0)
        return uncovered if uncovered.any() else None
    if overlap != "authors":
        raise ValueError(f"overlap must be 'union' or 'authors', got {overlap!r}")
    area = 0
    for x1, y1, x2, y2 in boxes:
        cols = max(0, min(round(x2 * width), width) - max(round(x1 * width), 0))
        rows = max(0, min(round(y2 * height), height) - max(round(y1 * height), 0))
        area += cols * rows
    if height * width - area <= 0:
        return None
    return masks.sum(0) != 1


def regional_attention_mask(region_masks: torch.Tensor, text_len: int) -> torch.Tensor:
    """(R*L + N, R*L + N) bool over ``[phrase 1, ..., phrase R, image]``: True where attention is allowed."""
    regions, tokens = region_masks.shape
    size = regions * text_len + tokens
    mask = torch.zeros(size, size, dtype=torch.bool)
    image = slice(regions * text_len, size)
    for i in range(regions):
        text = slice(i * text_len, (i + 1) * text_len)
        mask[text, text] = True
        mask[text, image] = region_masks[i][None, :]
        mask[image, text] = region_masks[i][:, None]
    as_float = region_masks.float()
    same_region = (as_float.T @ as_float) > 0
    uncovered = ~region_masks.any(0)
    mask[image, image] = same_region | (uncovered[:, None] & uncovered[None, :])
    return mask


@dataclass
class RegionalContext:
    """What the processors need during a masked step (passed as ``joint_attention_kwargs['regional']``)."""

    mask: torch.Tensor  # (B, 1, Lr + N, Lr + N) bool
    region_len: int  # Lr: all regional phrase tokens
    base_len: int  # Lb: the base prompt's tokens
    image_len: int  # N: image tokens (each stream)
    base_ratio: float
    double_interval: int
    single_interval: int

    def masks(self, kind: str, index: int) -> torch.Tensor | None:
        interval = self.double_interval if kind == "double" else self.single_interval
        return self.mask if index % interval == 0 else None


def _heads(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    return x.unflatten(-1, (-1, head_dim))  # (B, S, H, D)


def _rope(x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], rows: slice) -> torch.Tensor:
    return apply_rotary_emb(x, (rotary[0][rows], rotary[1][rows]), sequence_dim=1)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2).flatten(2, 3).to(q.dtype)


class RegionalFluxAttnProcessor:
    """Regional attention for one FLUX block; outside masked steps it defers to the block's own processor."""

    def __init__(self, kind: str, index: int, fallback: Any) -> None:
        self.kind, self.index, self.fallback = kind, index, fallback

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, image_rotary_emb: Any = None,
                 regional: RegionalContext | None = None) -> Any:
        if regional is None:
            return self.fallback(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        if self.kind == "double":
            return self._double(attn, hidden_states, encoder_hidden_states, image_rotary_emb, regional)
        return self._single(attn, hidden_states, image_rotary_emb, regional)

    def _double(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                rotary: Any, ctx: RegionalContext) -> tuple[torch.Tensor, torch.Tensor]:
        lr, n, texts = ctx.region_len, ctx.image_len, ctx.region_len + ctx.base_len
        image = hidden_states[:, :n]  # both copies are equal in the double-stream blocks
        q = _rope(attn.norm_q(_heads(attn.to_q(image), attn.head_dim)), rotary, slice(texts, texts + n))
        k = _rope(attn.norm_k(_heads(attn.to_k(image), attn.head_dim)), rotary, slice(texts, texts + n))
        v = _heads(attn.to_v(image), attn.head_dim)
        tq = _rope(attn.norm_added_q(_heads(attn.add_q_proj(encoder_hidden_states), attn.head_dim)), rotary, slice(0, texts))
        tk = _rope(attn.norm_added_k(_heads(attn.add_k_proj(encoder_hidden_states), attn.head_dim)), rotary, slice(0, texts))
        tv = _heads(attn.add_v_proj(encoder_hidden_states), attn.head_dim)
        regional = _attend(torch.cat([tq[:, :lr], q], 1), torch.cat([tk[:, :lr], k], 1), torch.cat([tv[:, :lr], v], 1),
                           ctx.masks("double", self.index))
        base = _attend(torch.cat([tq[:, lr:], q], 1), torch.cat([tk[:, lr:], k], 1), torch.cat([tv[:, lr:], v], 1), None)
        regional_image = attn.to_out[1](attn.to_out[0](regional[:, lr:].contiguous()))
        base_image = attn.to_out[1](attn.to_out[0](base[:, texts - lr:].contiguous()))
        mixed = regional_image * (1 - ctx.base_ratio) + base_image * ctx.base_ratio
        text = attn.to_add_out(torch.cat([regional[:, :lr], base[:, : texts - lr]], 1).contiguous())
        return torch.cat([mixed, mixed], 1), text

    def _single(self, attn: Any, hidden_states: torch.Tensor, rotary: Any, ctx: RegionalContext) -> torch.Tensor:
        lr, n, texts = ctx.region_len, ctx.image_len, ctx.region_len + ctx.base_len
        whole = slice(0, texts + 2 * n)
        q = _rope(attn.norm_q(_heads(attn.to_q(hidden_states), attn.head_dim)), rotary, whole)
        k = _rope(attn.norm_k(_heads(attn.to_k(hidden_states), attn.head_dim)), rotary, whole)
        v = _heads(attn.to_v(hidden_states), attn.head_dim)

        def stream(x: torch.Tensor, text: slice, image: slice) -> torch.Tensor:
            return torch.cat([x[:, text], x[:, image]], 1)

        reg_text, reg_image = slice(0, lr), slice(texts, texts + n)
        base_text, base_image = slice(lr, texts), slice(texts + n, texts + 2 * n)
        regional = _attend(stream(q, reg_text, reg_image), stream(k, reg_text, reg_image), stream(v, reg_text, reg_image),
                           ctx.masks("single", self.index))
        base = _attend(stream(q, base_text, base_image), stream(k, base_text, base_image), stream(v, base_text, base_image), None)
        mixed = regional[:, lr:] * (1 - ctx.base_ratio) + base[:, texts - lr:] * ctx.base_ratio
        return torch.cat([regional[:, :lr], base[:, : texts - lr], mixed, base[:, texts - lr:]], 1)


def install_regional_processors(transformer: Any) -> None:
    """Wrap every block's attention processor once (idempotent)."""
    for kind, blocks in (("double", transformer.transformer_blocks), ("single", transformer.single_transformer_blocks)):
        for index, block in enumerate(blocks):
            if not isinstance(block.attn.processor, RegionalFluxAttnProcessor):
                block.attn.set_processor(RegionalFluxAttnProcessor(kind, index, block.attn.processor))


class RegionalFluxPipeline(FluxPipeline):
    """FLUX with regional prompts: ``regions`` is a list of (phrase, normalized [x1, y1, x2, y2]) for one
    prompt, or one such list per prompt when ``prompt`` is a list (each sample grounded on its own).
    With ``repair_image`` and ``repair_boxes`` only the union of those boxes is repainted (the tokens
    outside it follow the image, noised to each step: ``backends.latent_blend.FlowBlend``).

        >>> pipe = RegionalFluxPipeline.from_pretrained("black-forest-labs/FLUX.1-schnell", torch_dtype=torch.bfloat16)
        >>> image = pipe("a cat and a dog on a sofa", [("a cat", [0.05, 0.3, 0.5, 0.9]), ("a dog", [0.5, 0.3, 0.95, 0.9])],
        ...              num_inference_steps=4, guidance_scale=0.0, max_sequence_length=256, mask_inject_steps=2).images[0]
    """

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], regions: Sequence[Region] | Sequence[Sequence[Region]] = (), *,
                 height: int | None = None, width: int | None = None, num_inference_steps: int = 28,
                 guidance_scale: float = 3.5, generator: Any = None, latents: torch.Tensor | None = None,
                 max_sequence_length: int = 512, mask_inject_steps: int = 10, double_inject_interval: int = 1,
                 single_inject_interval: int = 1, base_ratio: float = 0.2, background_prompt: str = "a photo",
                 overlap: str = "union", output_type: str = "pil", return_dict: bool = True, repair_image: Any = None,
                 repair_boxes: Sequence[Sequence[float]] | None = None) -> Any:
        prompts, samples = per_prompt(prompt, regions)
        height, width, cell = flux_loop.image_size(self, height, width)
        if overlap not in ("union", "authors"):
            raise ValueError(f"overlap must be 'union' or 'authors', got {overlap!r}")
        if min(double_inject_interval, single_inject_interval) < 1:
            raise ValueError("the inject intervals must be at least 1")
        install_regional_processors(self.transformer)
        device, batch = self._execution_device, len(prompts)
        prompt_embeds, pooled, text_ids, latents, image_ids = flux_loop.start(
            self, prompts, height, width, guidance_scale, generator, latents, max_sequence_length)
        blend = flux_loop.repair_blend(self, repair_image, repair_boxes, latents, width, height)
        context = None
        if samples[0] and mask_inject_steps > 0:
            region_embeds, mask = self._encode_regions(samples, height, width, cell, background_prompt, device,
                                                       max_sequence_length, overlap)
            context = RegionalContext(mask=mask.to(device), region_len=region_embeds.shape[1],
                                      base_len=prompt_embeds.shape[1], image_len=latents.shape[1], base_ratio=base_ratio,
                                      double_interval=double_inject_interval, single_interval=single_inject_interval)
        timesteps, guidance = flux_loop.schedule(self, num_inference_steps, latents, guidance_scale)
        for i, t in enumerate(timesteps):
            self._current_timestep = t
            timestep = t.expand(batch).to(latents.dtype) / 1000
            if context is not None and i < mask_inject_steps:
                noise = self._regional_prediction(latents, image_ids, timestep, guidance, pooled, prompt_embeds,
                                                  region_embeds, context)
            else:
                noise = self.transformer(hidden_states=latents, timestep=timestep, guidance=guidance,
                                         pooled_projections=pooled, encoder_hidden_states=prompt_embeds, txt_ids=text_ids,
                                         img_ids=image_ids, return_dict=False)[0]
            latents = self.scheduler.step(noise, t, latents, return_dict=False)[0]
            if blend is not None:
                latents = blend(self, i, t, {"latents": latents})["latents"]
        return flux_loop.finish(self, latents, height, width, output_type, return_dict)

    def _regional_prediction(self, latents: torch.Tensor, image_ids: torch.Tensor, timestep: torch.Tensor,
                             guidance: torch.Tensor | None, pooled: torch.Tensor, prompt_embeds: torch.Tensor,
                             region_embeds: torch.Tensor, context: RegionalContext) -> torch.Tensor:
        text = torch.cat([region_embeds, prompt_embeds], 1)
        text_ids = torch.zeros(text.shape[1], 3, device=image_ids.device, dtype=image_ids.dtype)
        out = self.transformer(hidden_states=torch.cat([latents, latents], 1), timestep=timestep, guidance=guidance,
                               pooled_projections=pooled, encoder_hidden_states=text, txt_ids=text_ids,
                               img_ids=torch.cat([image_ids, image_ids], 0), joint_attention_kwargs={"regional": context},
                               return_dict=False)[0]
        return out[:, : latents.shape[1]]

    def _encode_regions(self, samples: list[list[Region]], height: int, width: int, cell: int, background: str,
                        device: Any, max_sequence_length: int, overlap: str = "union") -> tuple[torch.Tensor, torch.Tensor]:
        """Each sample's phrases (plus the background, ``background_mask``), encoded one by one and
        concatenated; samples with fewer regions are padded with empty ones (no image tokens)."""
        prepared = []
        for regions in samples:
            phrases, boxes = [phrase for phrase, _ in regions], [box for _, box in regions]
            masks = region_token_masks(boxes, height, width, cell, keep_small=overlap == "union")
            rest = background_mask(masks, boxes, height, width, overlap)
            if rest is not None:
                phrases.append(background)
                masks = torch.cat([masks, rest[None]])
            prepared.append((phrases, masks))
        count = max(len(phrases) for phrases, _ in prepared)
        embeds, attention = [], []
        for phrases, masks in prepared:
            padding = count - len(phrases)
            phrases = phrases + [""] * padding
            masks = torch.cat([masks, torch.zeros(padding, masks.shape[1], dtype=torch.bool)])
            encoded = [self.encode_prompt(prompt=p, prompt_2=p, device=device, max_sequence_length=max_sequence_length)[0]
                       for p in phrases]
            embeds.append(torch.cat(encoded, 1))
            attention.append(regional_attention_mask(masks, encoded[0].shape[1]))
        return torch.cat(embeds), torch.stack(attention)[:, None]
