"""Tiny random-weight DiT pipelines (FLUX, SD3, SiamLayout) built from configs and saved like hub
checkpoints: one or two transformer blocks, tiny CLIP and T5 text encoders with tokenizers built here,
and an 8x VAE like the real ones, so a 64 x 64 image is a 4 x 4 grid of transformer tokens."""

from __future__ import annotations

from pathlib import Path

from tests.backends.tiny_diffusion import CHARS, clip_tokenizer

def t5_tokenizer(model_max_length: int = 512):
    """A T5 unigram tokenizer over single characters (so any phrase tokenizes), eos appended."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in CHARS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def t5_encoder(width: int = 32):
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(vocab_size=64, d_model=width, d_ff=37, d_kv=8, num_layers=1, num_heads=2,
                      relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return T5EncoderModel(config)


def clip_encoder(hidden: int = 32, projection: int | None = None):
    """CLIPTextModel (FLUX's pooled encoder) or, with ``projection``, CLIPTextModelWithProjection (SD3's)."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden, intermediate_size=37,
                            num_attention_heads=4, num_hidden_layers=2, vocab_size=128, projection_dim=projection or hidden,
                            max_position_embeddings=77)
    torch.manual_seed(0)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def vae(latent_channels: int, scaling_factor: float, shift_factor: float):
    """An 8x AutoencoderKL (four levels) without quant convs, as FLUX's and SD3's."""
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent_channels, block_out_channels=(8, 16, 16, 16),
                         down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                         layers_per_block=1, norm_num_groups=4, sample_size=64, scaling_factor=scaling_factor,
                         shift_factor=shift_factor, use_quant_conv=False, use_post_quant_conv=False)


def flux_scheduler(dev: bool):
    from diffusers import FlowMatchEulerDiscreteScheduler

    if dev:  # FLUX.1-dev's scheduler config: resolution-dependent shift
        return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                               base_image_seq_len=256, max_image_seq_len=4096)
    return FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)  # FLUX.1-schnell's


def flux_transformer(dev: bool, text_width: int = 32):
    import torch
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    return FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                  num_attention_heads=2, joint_attention_dim=text_width, pooled_projection_dim=32,
                                  guidance_embeds=dev, axes_dims_rope=(4, 6, 6))


def flux_components(target: Path, dev: bool = False, transformer=None, text_width: int = 32) -> dict:
    return dict(
        scheduler=flux_scheduler(dev), vae=vae(4, 0.3611, 0.1159), text_encoder=clip_encoder(32),
        tokenizer=clip_tokenizer(target / "_tok"), text_encoder_2=t5_encoder(text_width), tokenizer_2=t5_tokenizer(),
        transformer=transformer if transformer is not None else flux_transformer(dev, text_width),
    )


def build_tiny_flux(target: Path, dev: bool = False) -> Path:
    """A ``FluxPipeline`` folder: schnell-like (no guidance embedding) or, with ``dev``, dev-like."""
    from diffusers import FluxPipeline

    FluxPipeline(**flux_components(target, dev)).save_pretrained(target)
    return target


def wake_zero_layers(model) -> None:
    """Trained adapters are not zero; fresh SiamLayout ones are (``bbox_forward`` starts at zero, the null
    features too). Fill them, so that the boxes visibly steer these random-weight models."""
    import torch

    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "bbox_forward" in name or "null_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def sd3_components(target: Path, transformer) -> dict:
    """SD3's three text encoders: CLIP-L and CLIP-G projecting to 768 + 1280 = 2048 (the width the
    SiamLayout phrase embedding expects), and T5."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    tokenizer = clip_tokenizer(target / "_tok")
    return dict(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae(4, 1.5305, 0.0609),
        text_encoder=clip_encoder(32, 768), tokenizer=tokenizer, text_encoder_2=clip_encoder(32, 1280),
        tokenizer_2=tokenizer, text_encoder_3=t5_encoder(64), tokenizer_3=t5_tokenizer(), transformer=transformer,
    )


SD3_TRANSFORMER = dict(sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
                       num_attention_heads=2, joint_attention_dim=64, caption_projection_dim=16,
                       pooled_projection_dim=2048, pos_embed_max_size=16)


def build_tiny_creatilayout_sd3(target: Path) -> Path:
    """The project's CreatiLayout SD3 pipeline with a two-block SiamLayout transformer."""
    import torch

    from mllm_guidance.backends.layout_pipelines.siamlayout_sd3 import CreatiLayoutSD3Pipeline, SiamLayoutSD3Transformer2DModel

    torch.manual_seed(0)
    transformer = SiamLayoutSD3Transformer2DModel(**SD3_TRANSFORMER)
    wake_zero_layers(transformer)
    CreatiLayoutSD3Pipeline(**sd3_components(target, transformer)).save_pretrained(target)
    return target


def build_tiny_sd3(target: Path) -> Path:
    """A plain ``StableDiffusion3Pipeline`` folder (no layout branch)."""
    import torch
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(0)
    StableDiffusion3Pipeline(**sd3_components(target, SD3Transformer2DModel(**SD3_TRANSFORMER))).save_pretrained(target)
    return target


def build_tiny_creatilayout_flux(target: Path, text_width: int = 32) -> Path:
    """The project's CreatiLayout FLUX pipeline (FLUX.1-dev-like, one double and one single SiamLayout block)."""
    import torch

    from mllm_guidance.backends.layout_pipelines.siamlayout_flux import CreatiLayoutFluxPipeline, SiamLayoutFluxTransformer2DModel

    torch.manual_seed(0)
    transformer = SiamLayoutFluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=text_width, pooled_projection_dim=32, guidance_embeds=True, axes_dims_rope=(4, 6, 6),
        double_blocks_index=[0], single_blocks_index=[0], max_boxes_token_length=12,
    )
    wake_zero_layers(transformer)
    CreatiLayoutFluxPipeline(**flux_components(target, True, transformer, text_width)).save_pretrained(target)
    return target
