"""CreatiLayout's SiamLayout on FLUX.1-dev: the project's transformer blocks and pipeline.

Same idea as on SD3 (``siamlayout_sd3.py``): the layout is a third stream with its own weights. In
each double-stream block the image attends jointly with the layout tokens (``bbox_attn``), whose image
output passes ``bbox_forward`` (zero-initialized) and joins the image-text attention output; the
layout tokens have their own norms and feed-forward. In each single-stream block a parallel block
(``bbox_norm``, ``bbox_proj_mlp``, ``bbox_attn``, ``bbox_proj_out``) runs over ``[layout tokens, image]``
taken before the block, and its image part, through ``bbox_forward``, joins the block's update. A box
is its phrase's first 30 T5 tokens (through the transformer's own ``context_embedder``) plus a
Fourier embedding of its corners, so 10 boxes make 300 layout tokens; they all sit at rotary position
(-1, -1, -1).

Checkpoint layout, read from HuiZhang0812/CreatiLayout (commit 860d8bd,
``src/models/transformer_flux_SiamLayout.py``, ``test_SiamLayout_flux_layoutsam_benchmark.py``): the
folder ``SiamLayout_FLUX`` of ``HuiZhang0812/CreatiLayout`` holds a whole FLUX.1-dev transformer with
these extra parameters in every double block (``norm1_bbox``, ``bbox_attn``, ``norm2_bbox``,
``ff_bbox``, ``bbox_forward``) and every single block (``bbox_norm``, ``bbox_proj_mlp``,
``bbox_proj_out``, ``bbox_attn``, ``bbox_forward``), and ``position_net`` (``linears`` and the null
features); the authors load it with ``double_blocks_index`` 0-18, ``single_blocks_index`` 0-37,
``max_boxes_token_length`` 30 and ``fix_bbox_ids`` true, as ``load_transformer`` does here.

The authors' pipeline runs true classifier-free guidance by default (scale 3.0 against an empty
negative prompt whose pass sees the null layout) on top of FLUX.1-dev's guidance embedding (3.5), so
each step is two transformer passes; the layout branch runs in both passes for the first 30% of the
steps (rounded down, so fewer than 4 steps are never grounded). These are this pipeline's defaults too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers import FluxPipeline, FluxTransformer2DModel
from diffusers.configuration_utils import register_to_config

# diffusers checks a component saved from this module against the loadable base classes it finds
# here (``ModelMixin``) when the pipeline is assembled again: keep the name importable from it.
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401
from diffusers.models.attention import FeedForward
from diffusers.models.normalization import AdaLayerNormZero, AdaLayerNormZeroSingle
from diffusers.models.transformers.transformer_flux import (
    FluxAttention,
    FluxAttnProcessor,
    FluxSingleTransformerBlock,
    FluxTransformerBlock,
)
from torch import nn

from mllm_guidance.backends.layout_pipelines import flux_loop
from mllm_guidance.backends.layout_pipelines.box_tokens import BoxLayout, BoxTokenProjection, LayoutCarry
from mllm_guidance.backends.layout_pipelines.regions import per_prompt
from mllm_guidance.backends.layout_pipelines.siamlayout_sd3 import box_slots


def _split_carry(joint_attention_kwargs: dict[str, Any] | None) -> tuple[dict[str, Any], LayoutCarry | None]:
    kwargs = dict(joint_attention_kwargs or {})
    carry = kwargs.pop("siam_layout", None)
    return kwargs, carry if carry is not None and carry.scale != 0 else None


def _clip16(x: torch.Tensor) -> torch.Tensor:
    return x.clip(-65504, 65504) if x.dtype == torch.float16 else x


class SiamLayoutFluxTransformerBlock(FluxTransformerBlock):
    """A FLUX double-stream block, with SiamLayout's image-layout branch when ``layout``."""

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int, qk_norm: str = "rms_norm",
                 eps: float = 1e-6, layout: bool = True) -> None:
        super().__init__(dim, num_attention_heads, attention_head_dim, qk_norm, eps)
        self.layout = layout
        if layout:
            self.norm1_bbox = AdaLayerNormZero(dim)
            self.bbox_attn = FluxAttention(query_dim=dim, added_kv_proj_dim=dim, dim_head=attention_head_dim,
                                           heads=num_attention_heads, out_dim=dim, context_pre_only=False, bias=True,
                                           processor=FluxAttnProcessor(), eps=eps)
            self.norm2_bbox = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
            self.ff_bbox = FeedForward(dim=dim, dim_out=dim, activation_fn="gelu-approximate")
            self.bbox_forward = nn.Linear(dim, dim)
            nn.init.zeros_(self.bbox_forward.weight)
            nn.init.zeros_(self.bbox_forward.bias)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, temb: torch.Tensor,
                image_rotary_emb: Any = None, joint_attention_kwargs: dict[str, Any] | None = None) -> Any:
        kwargs, carry = _split_carry(joint_attention_kwargs)
        if carry is None or not self.layout:
            return super().forward(hidden_states, encoder_hidden_states, temb, image_rotary_emb, kwargs)
        norm_hidden, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(hidden_states, emb=temb)
        norm_context, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = self.norm1_context(encoder_hidden_states, emb=temb)
        attn_output, context_attn_output = self.attn(hidden_states=norm_hidden, encoder_hidden_states=norm_context,
                                                     image_rotary_emb=image_rotary_emb, **kwargs)
        attn_output = gate_msa.unsqueeze(1) * attn_output

        tokens = carry.tokens
        norm_tokens, b_gate_msa, b_shift_mlp, b_scale_mlp, b_gate_mlp = self.norm1_bbox(tokens, emb=temb)
        from_layout, tokens_out = self.bbox_attn(hidden_states=norm_hidden, encoder_hidden_states=norm_tokens,
                                                 image_rotary_emb=carry.rotary, **kwargs)
        attn_output = attn_output + carry.scale * self.bbox_forward(from_layout)

        hidden_states = hidden_states + attn_output
        norm_hidden = self.norm2(hidden_states) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        hidden_states = hidden_states + gate_mlp.unsqueeze(1) * self.ff(norm_hidden)

        encoder_hidden_states = encoder_hidden_states + c_gate_msa.unsqueeze(1) * context_attn_output
        norm_context = self.norm2_context(encoder_hidden_states) * (1 + c_scale_mlp[:, None]) + c_shift_mlp[:, None]
        encoder_hidden_states = _clip16(encoder_hidden_states + c_gate_mlp.unsqueeze(1) * self.ff_context(norm_context))

        tokens = tokens + b_gate_msa.unsqueeze(1) * tokens_out
        norm_tokens = self.norm2_bbox(tokens) * (1 + b_scale_mlp[:, None]) + b_shift_mlp[:, None]
        carry.tokens = tokens + b_gate_mlp.unsqueeze(1) * self.ff_bbox(norm_tokens)
        return encoder_hidden_states, hidden_states


class SiamLayoutFluxSingleTransformerBlock(FluxSingleTransformerBlock):
    """A FLUX single-stream block, with SiamLayout's parallel image-layout block when ``layout``."""

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int, mlp_ratio: float = 4.0,
                 layout: bool = True) -> None:
        super().__init__(dim, num_attention_heads, attention_head_dim, mlp_ratio)
        self.layout = layout
        if layout:
            self.bbox_norm = AdaLayerNormZeroSingle(dim)
            self.bbox_proj_mlp = nn.Linear(dim, self.mlp_hidden_dim)
            self.bbox_act_mlp = nn.GELU(approximate="tanh")
            self.bbox_proj_out = nn.Linear(dim + self.mlp_hidden_dim, dim)
            self.bbox_attn = FluxAttention(query_dim=dim, dim_head=attention_head_dim, heads=num_attention_heads,
                                           out_dim=dim, bias=True, processor=FluxAttnProcessor(), eps=1e-6, pre_only=True)
            self.bbox_forward = nn.Linear(dim, dim)
            nn.init.zeros_(self.bbox_forward.weight)
            nn.init.zeros_(self.bbox_forward.bias)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor, temb: torch.Tensor,
                image_rotary_emb: Any = None, joint_attention_kwargs: dict[str, Any] | None = None) -> Any:
        kwargs, carry = _split_carry(joint_attention_kwargs)
        if carry is None or not self.layout:
            return super().forward(hidden_states, encoder_hidden_states, temb, image_rotary_emb, kwargs)
        text_len = encoder_hidden_states.shape[1]
        image = hidden_states
        residual = torch.cat([encoder_hidden_states, image], dim=1)
        norm_hidden, gate = self.norm(residual, emb=temb)
        mlp = self.act_mlp(self.proj_mlp(norm_hidden))
        attn_output = self.attn(hidden_states=norm_hidden, image_rotary_emb=image_rotary_emb, **kwargs)
        update = gate.unsqueeze(1) * self.proj_out(torch.cat([attn_output, mlp], dim=2))

        tokens = carry.tokens
        joined = torch.cat([tokens, image], dim=1)
        norm_joined, gate_joined = self.bbox_norm(joined, emb=temb)
        mlp_joined = self.bbox_act_mlp(self.bbox_proj_mlp(norm_joined))
        attn_joined = self.bbox_attn(hidden_states=norm_joined, image_rotary_emb=carry.rotary, **kwargs)
        joined_update = gate_joined.unsqueeze(1) * self.bbox_proj_out(torch.cat([attn_joined, mlp_joined], dim=2))
        update[:, text_len:] += carry.scale * self.bbox_forward(joined_update[:, tokens.shape[1]:])
        carry.tokens = _clip16(tokens + joined_update[:, : tokens.shape[1]])

        hidden_states = _clip16(residual + update)
        return hidden_states[:, :text_len], hidden_states[:, text_len:]


class SiamLayoutFluxTransformer2DModel(FluxTransformer2DModel):
    """``FluxTransformer2DModel`` with SiamLayout blocks (all of them unless the indices say otherwise) and
    ``position_net``; loads CreatiLayout's ``SiamLayout_FLUX`` folder. Ground with
    ``joint_attention_kwargs={"layout": BoxLayout(...)}`` whose phrases are T5 embeddings (B, N, T, width)."""

    _no_split_modules = ["SiamLayoutFluxTransformerBlock", "SiamLayoutFluxSingleTransformerBlock"]
    _repeated_blocks = ["SiamLayoutFluxTransformerBlock", "SiamLayoutFluxSingleTransformerBlock"]

    @register_to_config
    def __init__(self, patch_size: int = 1, in_channels: int = 64, out_channels: int | None = None, num_layers: int = 19,
                 num_single_layers: int = 38, attention_head_dim: int = 128, num_attention_heads: int = 24,
                 joint_attention_dim: int = 4096, pooled_projection_dim: int = 768, guidance_embeds: bool = False,
                 axes_dims_rope: tuple[int, int, int] = (16, 56, 56), attention_type: str = "layout",
                 double_blocks_index: list[int] | None = None, single_blocks_index: list[int] | None = None,
                 max_boxes_token_length: int = 30, fix_bbox_ids: bool = True) -> None:
        if attention_type != "layout":
            raise ValueError(f"attention_type {attention_type!r}: a SiamLayout transformer has attention_type 'layout'")
        super().__init__(patch_size=patch_size, in_channels=in_channels, out_channels=out_channels, num_layers=num_layers,
                         num_single_layers=num_single_layers, attention_head_dim=attention_head_dim,
                         num_attention_heads=num_attention_heads, joint_attention_dim=joint_attention_dim,
                         pooled_projection_dim=pooled_projection_dim, guidance_embeds=guidance_embeds,
                         axes_dims_rope=axes_dims_rope)
        doubles = set(range(num_layers) if double_blocks_index is None else double_blocks_index)
        singles = set(range(num_single_layers) if single_blocks_index is None else single_blocks_index)
        self.transformer_blocks = nn.ModuleList([
            SiamLayoutFluxTransformerBlock(self.inner_dim, num_attention_heads, attention_head_dim, layout=i in doubles)
            for i in range(num_layers)
        ])
        self.single_transformer_blocks = nn.ModuleList([
            SiamLayoutFluxSingleTransformerBlock(self.inner_dim, num_attention_heads, attention_head_dim, layout=i in singles)
            for i in range(num_single_layers)
        ])
        self.position_net = BoxTokenProjection(self.inner_dim)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                pooled_projections: torch.Tensor | None = None, timestep: torch.Tensor | None = None,
                img_ids: torch.Tensor | None = None, txt_ids: torch.Tensor | None = None,
                guidance: torch.Tensor | None = None, joint_attention_kwargs: dict[str, Any] | None = None,
                controlnet_block_samples: Any = None, controlnet_single_block_samples: Any = None,
                return_dict: bool = True, controlnet_blocks_repeat: bool = False) -> Any:
        kwargs = dict(joint_attention_kwargs or {})
        layout: BoxLayout | None = kwargs.pop("layout", None)
        if layout is not None and layout.scale != 0:
            kwargs["siam_layout"] = self._layout_carry(layout, img_ids)
        return super().forward(hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states,
                               pooled_projections=pooled_projections, timestep=timestep, img_ids=img_ids, txt_ids=txt_ids,
                               guidance=guidance, joint_attention_kwargs=kwargs or None,
                               controlnet_block_samples=controlnet_block_samples,
                               controlnet_single_block_samples=controlnet_single_block_samples, return_dict=return_dict,
                               controlnet_blocks_repeat=controlnet_blocks_repeat)

    def _layout_carry(self, layout: BoxLayout, img_ids: torch.Tensor) -> LayoutCarry:
        dtype = self.proj_out.weight.dtype
        per_box = self.config.max_boxes_token_length
        phrases = self.context_embedder(layout.phrases[:, :, :per_box].to(dtype))
        tokens = self.position_net(layout.boxes.to(dtype), layout.masks.to(dtype), phrases)
        image_ids = img_ids[0] if img_ids.ndim == 3 else img_ids
        if self.config.fix_bbox_ids:
            layout_ids = torch.full((tokens.shape[1], 3), -1.0, device=image_ids.device, dtype=image_ids.dtype)
        else:  # each box at its own position past the image's largest id
            slot = torch.arange(tokens.shape[1], device=image_ids.device) // per_box
            layout_ids = (image_ids.max() + 1 + slot).to(image_ids.dtype)[:, None].expand(-1, 3)
        rotary = self.pos_embed(torch.cat([layout_ids, image_ids], dim=0))
        return LayoutCarry(tokens=tokens, scale=layout.scale, rotary=rotary)


def load_transformer(path: str, subfolder: str | None, torch_dtype: Any = None) -> SiamLayoutFluxTransformer2DModel:
    """CreatiLayout's FLUX transformer, loaded as the authors load it (every block grounded, 30 tokens a box)."""
    config = SiamLayoutFluxTransformer2DModel.load_config(path, subfolder=subfolder)
    return SiamLayoutFluxTransformer2DModel.from_pretrained(
        path, subfolder=subfolder, torch_dtype=torch_dtype, double_blocks_index=list(range(config["num_layers"])),
        single_blocks_index=list(range(config["num_single_layers"])), max_boxes_token_length=30, fix_bbox_ids=True)


class CreatiLayoutFluxPipeline(FluxPipeline):
    """FLUX.1-dev with SiamLayout grounding: ``regions`` is a list of (phrase, normalized [x1, y1, x2, y2])
    for one prompt, or one list per prompt. Defaults are the authors' (see the module docstring).

        >>> transformer = load_transformer("HuiZhang0812/CreatiLayout", "SiamLayout_FLUX", torch.bfloat16)
        >>> pipe = CreatiLayoutFluxPipeline.from_pretrained("black-forest-labs/FLUX.1-dev", transformer=transformer, torch_dtype=torch.bfloat16)
        >>> image = pipe("a cat on a sofa", [("a grey cat", [0.3, 0.4, 0.7, 0.9])], height=512, width=512).images[0]
    """

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], regions: Sequence[Any] = (), *, negative_prompt: str = "",
                 true_cfg_scale: float = 3.0, height: int | None = None, width: int | None = None,
                 num_inference_steps: int = 28, guidance_scale: float = 3.5, grounding_share: float = 0.3,
                 generator: Any = None, latents: torch.Tensor | None = None, max_sequence_length: int = 512,
                 output_type: str = "pil", return_dict: bool = True, repair_image: Any = None,
                 repair_boxes: Sequence[Sequence[float]] | None = None) -> Any:
        prompts, samples = per_prompt(prompt, regions)
        height, width, _ = flux_loop.image_size(self, height, width)
        device, batch = self._execution_device, len(prompts)
        prompt_embeds, pooled, text_ids, latents, image_ids = flux_loop.start(
            self, prompts, height, width, guidance_scale, generator, latents, max_sequence_length)
        true_cfg = true_cfg_scale > 1
        if true_cfg:
            negative_embeds, negative_pooled, _ = self.encode_prompt(prompt=[negative_prompt] * batch, prompt_2=None,
                                                                     device=device, max_sequence_length=max_sequence_length)
        blend = flux_loop.repair_blend(self, repair_image, repair_boxes, latents, width, height)
        layout = negative_layout = None
        if samples[0]:
            layout = self._layout(samples, device, latents.dtype)
            negative_layout = BoxLayout(boxes=layout.boxes, masks=torch.zeros_like(layout.masks), phrases=layout.phrases)
        timesteps, guidance = flux_loop.schedule(self, num_inference_steps, latents, guidance_scale)
        grounded = int(grounding_share * len(timesteps))
        for i, t in enumerate(timesteps):
            self._current_timestep = t
            timestep = t.expand(batch).to(latents.dtype) / 1000
            ground = layout is not None and i < grounded
            common = dict(hidden_states=latents, timestep=timestep, guidance=guidance, txt_ids=text_ids, img_ids=image_ids,
                          return_dict=False)
            noise = self.transformer(pooled_projections=pooled, encoder_hidden_states=prompt_embeds,
                                     joint_attention_kwargs={"layout": layout} if ground else None, **common)[0]
            if true_cfg:
                negative = self.transformer(pooled_projections=negative_pooled, encoder_hidden_states=negative_embeds,
                                            joint_attention_kwargs={"layout": negative_layout} if ground else None, **common)[0]
                noise = negative + true_cfg_scale * (noise - negative)
            latents = self.scheduler.step(noise, t, latents, return_dict=False)[0]
            if blend is not None:
                latents = blend(self, i, t, {"latents": latents})["latents"]
        return flux_loop.finish(self, latents, height, width, output_type, return_dict)

    def _layout(self, samples: list[list[Any]], device: Any, dtype: Any) -> BoxLayout:
        """Boxes, masks and each phrase's T5 embedding (77 tokens, as the authors encode them) in 10 slots."""
        boxes, masks = box_slots(samples, 10, device, dtype)
        width = self.text_encoder_2.config.d_model
        phrases = torch.zeros(len(samples), boxes.shape[1], 77, width, device=device, dtype=dtype)
        for i, regions in enumerate(samples):
            encoded = self._get_t5_prompt_embeds(prompt=[p for p, _ in regions], max_sequence_length=77, device=device)
            phrases[i, : len(regions)] = encoded.to(dtype)
        return BoxLayout(boxes=boxes, masks=masks, phrases=phrases)
