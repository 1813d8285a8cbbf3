"""CreatiLayout's SiamLayout on Stable Diffusion 3: the project's transformer blocks and pipeline.

SiamLayout (Zhang et al., ICCV 2025) treats the layout as a third modality with its own weights: every
MM-DiT block gets a siamese branch in which the image attends jointly with the layout tokens
(``bbox_fuser_block``); that branch's image output goes through a zero-initialized linear layer
(``bbox_forward``) and is added to the image-text attention output, and the layout tokens have their
own adaptive norms and feed-forward, like the text stream. The branch runs for the first 30% of the
denoising steps, then is skipped.

Checkpoint layout, read from HuiZhang0812/CreatiLayout (commit 860d8bd,
``src/models/transformer_sd3_SiamLayout.py`` and ``attention_sd3_SiamLayout.py``): the folder
``SiamLayout_SD3`` of ``HuiZhang0812/CreatiLayout`` holds a whole SD3-medium transformer whose
``config.json`` adds ``attention_type: "layout"`` (and ``max_boxes_per_image``, 10); next to SD3's own
parameters each ``transformer_blocks.{i}`` has ``bbox_fuser_block`` (an attention with added
key/value projections, context-pre-only in the last block), ``bbox_forward``, ``norm1_bbox`` (adaptive
LayerNorm-zero, continuous in the last block) and, except in the last block, ``norm2_bbox`` and
``ff_bbox``; ``position_net`` turns (phrase, box) pairs into tokens (``box_tokens.py``). A phrase is
embedded as CLIP-L's projected text embedding (768) followed by CLIP-G's (1280): 2048.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline
from diffusers.configuration_utils import register_to_config

# diffusers checks a component saved from this module against the loadable base classes it finds
# here (``ModelMixin``) when the pipeline is assembled again: keep the name importable from it.
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401
from diffusers.models.attention import FeedForward, JointTransformerBlock
from diffusers.models.attention_processor import Attention, JointAttnProcessor2_0
from diffusers.models.normalization import AdaLayerNormContinuous, AdaLayerNormZero
from torch import nn

from mllm_guidance.backends.latent_blend import chain, prepare_sd3_repair, wants_repair
from mllm_guidance.backends.layout_pipelines.box_tokens import BoxLayout, BoxTokenProjection, LayoutCarry
from mllm_guidance.backends.layout_pipelines.regions import Region, per_prompt


class SiamLayoutJointTransformerBlock(JointTransformerBlock):
    """An SD3 MM-DiT block with SiamLayout's image-layout branch."""

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int, context_pre_only: bool = False,
                 qk_norm: str | None = None, use_dual_attention: bool = False) -> None:
        super().__init__(dim, num_attention_heads, attention_head_dim, context_pre_only, qk_norm, use_dual_attention)
        self.bbox_fuser_block = Attention(query_dim=dim, cross_attention_dim=None, added_kv_proj_dim=dim,
                                          dim_head=attention_head_dim, heads=num_attention_heads, out_dim=dim,
                                          context_pre_only=context_pre_only, bias=True, processor=JointAttnProcessor2_0())
        self.bbox_forward = nn.Linear(dim, dim)
        nn.init.zeros_(self.bbox_forward.weight)
        nn.init.zeros_(self.bbox_forward.bias)
        if context_pre_only:
            self.norm1_bbox = AdaLayerNormContinuous(dim, dim, elementwise_affine=False, eps=1e-6, bias=True,
                                                     norm_type="layer_norm")
        else:
            self.norm1_bbox = AdaLayerNormZero(dim)
            self.norm2_bbox = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.ff_bbox = FeedForward(dim=dim, dim_out=dim, activation_fn="gelu-approximate")

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, temb: torch.Tensor,
                joint_attention_kwargs: dict[str, Any] | None = None) -> tuple[Any, torch.Tensor]:
        kwargs = dict(joint_attention_kwargs or {})
        carry = kwargs.pop("siam_layout", None)
        if carry is None or carry.scale == 0:
            return super().forward(hidden_states, encoder_hidden_states, temb, kwargs)
        norm_hidden, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(hidden_states, emb=temb)
        if self.context_pre_only:
            norm_context = self.norm1_context(encoder_hidden_states, temb)
        else:
            norm_context, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = self.norm1_context(encoder_hidden_states, emb=temb)
        attn_output, context_attn_output = self.attn(hidden_states=norm_hidden, encoder_hidden_states=norm_context, **kwargs)
        attn_output = gate_msa.unsqueeze(1) * attn_output
        attn_output = attn_output + carry.scale * self.bbox_forward(self._layout_branch(norm_hidden, temb, carry))
        hidden_states = hidden_states + attn_output

        norm_hidden = self.norm2(hidden_states) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        hidden_states = hidden_states + gate_mlp.unsqueeze(1) * self.ff(norm_hidden)
        if self.context_pre_only:
            return None, hidden_states
        encoder_hidden_states = encoder_hidden_states + c_gate_msa.unsqueeze(1) * context_attn_output
        norm_context = self.norm2_context(encoder_hidden_states) * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None]
        encoder_hidden_states = encoder_hidden_states + c_gate_mlp.unsqueeze(1) * self.ff_context(norm_context)
        return encoder_hidden_states, hidden_states

    def _layout_branch(self, norm_hidden: torch.Tensor, temb: torch.Tensor, carry: LayoutCarry) -> torch.Tensor:
        """Image-layout joint attention; updates the layout tokens for the next block, returns the image part."""
        tokens = carry.tokens
        if self.context_pre_only:
            image_out, _ = self.bbox_fuser_block(hidden_states=norm_hidden, encoder_hidden_states=self.norm1_bbox(tokens, temb))
            carry.tokens = None
            return image_out
        norm_tokens, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1_bbox(tokens, emb=temb)
        image_out, tokens_out = self.bbox_fuser_block(hidden_states=norm_hidden, encoder_hidden_states=norm_tokens)
        tokens = tokens + gate_msa.unsqueeze(1) * tokens_out
        norm_tokens = self.norm2_bbox(tokens) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        carry.tokens = tokens + gate_mlp.unsqueeze(1) * self.ff_bbox(norm_tokens)
        return image_out


class SiamLayoutSD3Transformer2DModel(SD3Transformer2DModel):
    """``SD3Transformer2DModel`` with SiamLayout blocks and ``position_net``; loads CreatiLayout's
    ``SiamLayout_SD3`` folder. Pass ``joint_attention_kwargs={"layout": BoxLayout(...)}`` to ground."""

    @register_to_config
    def __init__(self, sample_size: int = 128, patch_size: int = 2, in_channels: int = 16, num_layers: int = 18,
                 attention_head_dim: int = 64, num_attention_heads: int = 18, joint_attention_dim: int = 4096,
                 caption_projection_dim: int = 1152, pooled_projection_dim: int = 2048, out_channels: int = 16,
                 pos_embed_max_size: int = 96, dual_attention_layers: tuple[int, ...] = (), qk_norm: str | None = None,
                 attention_type: str = "layout", max_boxes_per_image: int = 10) -> None:
        if dual_attention_layers or qk_norm or attention_type != "layout":
            raise ValueError("SiamLayout weights exist for SD3-medium only (no qk-norm, no dual attention, "
                             "attention_type 'layout'); this config is not one")
        super().__init__(sample_size=sample_size, patch_size=patch_size, in_channels=in_channels, num_layers=num_layers,
                         attention_head_dim=attention_head_dim, num_attention_heads=num_attention_heads,
                         joint_attention_dim=joint_attention_dim, caption_projection_dim=caption_projection_dim,
                         pooled_projection_dim=pooled_projection_dim, out_channels=out_channels,
                         pos_embed_max_size=pos_embed_max_size)
        self.transformer_blocks = nn.ModuleList([
            SiamLayoutJointTransformerBlock(self.inner_dim, num_attention_heads, attention_head_dim,
                                            context_pre_only=i == num_layers - 1)
            for i in range(num_layers)
        ])
        self.position_net = BoxTokenProjection(self.inner_dim, phrase_dim=pooled_projection_dim)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                pooled_projections: torch.Tensor | None = None, timestep: torch.Tensor | None = None,
                block_controlnet_hidden_states: list | None = None,
                joint_attention_kwargs: dict[str, Any] | None = None, return_dict: bool = True,
                skip_layers: list[int] | None = None) -> Any:
        kwargs = dict(joint_attention_kwargs or {})
        layout: BoxLayout | None = kwargs.pop("layout", None)
        if layout is not None and layout.scale != 0:
            dtype = self.proj_out.weight.dtype
            tokens = self.position_net(layout.boxes.to(dtype), layout.masks.to(dtype), layout.phrases.to(dtype))
            kwargs["siam_layout"] = LayoutCarry(tokens=tokens, scale=layout.scale)
        return super().forward(hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states,
                               pooled_projections=pooled_projections, timestep=timestep,
                               block_controlnet_hidden_states=block_controlnet_hidden_states,
                               joint_attention_kwargs=kwargs or None, return_dict=return_dict, skip_layers=skip_layers)


def box_slots(samples: list[list[Region]], slots: int, device: Any, dtype: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(boxes (B, slots, 4), masks (B, slots)): each sample's boxes, then empty slots."""
    boxes = torch.zeros(len(samples), slots, 4, device=device, dtype=dtype)
    masks = torch.zeros(len(samples), slots, device=device, dtype=dtype)
    for i, regions in enumerate(samples):
        if len(regions) > slots:
            raise ValueError(f"{len(regions)} boxes; this model takes at most {slots}")
        if regions:
            boxes[i, : len(regions)] = torch.tensor([list(box) for _, box in regions], device=device, dtype=dtype)
            masks[i, : len(regions)] = 1
    return boxes, masks


class CreatiLayoutSD3Pipeline(StableDiffusion3Pipeline):
    """SD3 with SiamLayout grounding: ``regions`` is a list of (phrase, normalized [x1, y1, x2, y2]) for
    one prompt, or one list per prompt; the layout branch runs for the first ``grounding_share`` of the
    steps (the authors' 0.3). Everything else is diffusers' ``StableDiffusion3Pipeline``.

        >>> transformer = SiamLayoutSD3Transformer2DModel.from_pretrained("HuiZhang0812/CreatiLayout", subfolder="SiamLayout_SD3")
        >>> pipe = CreatiLayoutSD3Pipeline.from_pretrained("stabilityai/stable-diffusion-3-medium-diffusers", transformer=transformer)
        >>> image = pipe("a cat on a sofa", [("a grey cat", [0.3, 0.4, 0.7, 0.9])], num_inference_steps=50, guidance_scale=7.5).images[0]
    """

    @torch.no_grad()
    def __call__(self, prompt: Any = None, regions: Sequence[Any] = (), *, grounding_share: float = 0.3,
                 num_inference_steps: int = 28, guidance_scale: float = 7.0, num_images_per_prompt: int = 1,
                 joint_attention_kwargs: dict[str, Any] | None = None, repair_image: Any = None,
                 repair_boxes: Sequence[Sequence[float]] | None = None, **kwargs: Any) -> Any:
        prompts, samples = per_prompt(prompt, regions)
        blend = None
        if wants_repair(repair_image, repair_boxes):  # repaint only inside repair_boxes (backends.latent_blend)
            size = self.default_sample_size * self.vae_scale_factor
            kwargs["latents"], blend = prepare_sd3_repair(
                self, repair_image, repair_boxes, kwargs.get("generator"), len(prompts) * num_images_per_prompt,
                kwargs.get("width") or size, kwargs.get("height") or size, self.transformer.dtype)
        common = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                      num_images_per_prompt=num_images_per_prompt, **kwargs)
        if not samples[0]:
            return super().__call__(prompt, joint_attention_kwargs=joint_attention_kwargs, callback_on_step_end=blend,
                                    **common)
        if num_images_per_prompt != 1:
            raise ValueError("grounded renders take num_images_per_prompt=1; repeat the prompt instead")
        device, dtype = self._execution_device, self.transformer.dtype
        boxes, masks = box_slots(samples, self.transformer.config.max_boxes_per_image, device, dtype)
        phrases = torch.zeros(len(samples), boxes.shape[1], self.transformer.config.pooled_projection_dim, device=device,
                              dtype=dtype)
        for i, regions in enumerate(samples):
            phrases[i, : len(regions)] = self.encode_phrases([p for p, _ in regions], device).to(dtype)
        if guidance_scale > 1:  # the unconditional half (first, as SD3 stacks it) gets the null layout
            boxes, phrases, masks = torch.cat([boxes] * 2), torch.cat([phrases] * 2), torch.cat([torch.zeros_like(masks), masks])
        layout = BoxLayout(boxes=boxes, masks=masks, phrases=phrases, scale=1.0)
        grounded = int(grounding_share * num_inference_steps)
        if grounded == 0:
            layout.scale = 0.0

        def after_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            if step + 1 == grounded:
                layout.scale = 0.0
            return tensors

        attention = {**(joint_attention_kwargs or {}), "layout": layout}
        return super().__call__(prompts, joint_attention_kwargs=attention, callback_on_step_end=chain(after_step, blend),
                                **common)

    @torch.no_grad()
    def encode_phrases(self, phrases: list[str], device: Any) -> torch.Tensor:
        """CLIP-L's projected text embedding followed by CLIP-G's, one row per phrase."""
        parts = []
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder), (self.tokenizer_2, self.text_encoder_2)):
            ids = tokenizer(phrases, padding="max_length", max_length=self.tokenizer_max_length, truncation=True,
                            return_tensors="pt").input_ids.to(device)
            parts.append(encoder(ids, output_hidden_states=True)[0])
        return torch.cat(parts, dim=-1)
