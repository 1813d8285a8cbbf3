"""Tiny random-weight diffusion pipelines built from configs and saved like hub checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,'-"


def clip_tokenizer(directory: Path):
    """A CLIP BPE tokenizer over single characters (no merges), model_max_length 77."""
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in CHARS:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=77,
                         pad_token="<|endoftext|>")


def _text_encoder(hidden: int, with_projection: bool = False):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden, intermediate_size=37,
                            num_attention_heads=4, num_hidden_layers=2, vocab_size=128, projection_dim=hidden,
                            max_position_embeddings=77)
    torch.manual_seed(0)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def _vae():
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, sample_size=64)


def _open_gates(unet) -> None:
    """Fresh GLIGEN fusers start closed (tanh(alpha) = 0); trained ones are open. Open them, so
    that the boxes visibly steer these random-weight models."""
    for module in unet.modules():
        if type(module).__name__ == "GatedSelfAttentionDense":
            module.alpha_attn.data.fill_(1.0)
            module.alpha_dense.data.fill_(1.0)


def build_tiny_gligen(target: Path, gated: bool = True) -> Path:
    """The project's SD GLIGEN pipeline (or, ungated, a StableDiffusionPipeline) with 32-channel blocks."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    from mllm_guidance.backends.layout_pipelines.gligen_sd_pipeline import StableDiffusionGLIGENPipeline

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, **({"attention_type": "gated"} if gated else {}),
    )
    _open_gates(unet)
    cls = StableDiffusionGLIGENPipeline if gated else StableDiffusionPipeline
    pipe = cls(vae=_vae(), text_encoder=_text_encoder(32), tokenizer=clip_tokenizer(target / "_tok"), unet=unet,
               scheduler=DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, steps_offset=1), safety_checker=None,
               feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(target)
    return target


def build_tiny_gligen_xl(target: Path) -> Path:
    """The project's SDXL GLIGEN pipeline: text encoders of width 32 + 32 = the UNet's 64."""
    import torch
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

    from mllm_guidance.backends.layout_pipelines.gligen_xl_pipeline import StableDiffusionXLGLIGENPipeline

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=32 + 6 * 8,
        cross_attention_dim=64, attention_type="gated",
    )
    _open_gates(unet)
    tokenizer = clip_tokenizer(target / "_tok")
    pipe = StableDiffusionXLGLIGENPipeline(
        vae=_vae(), text_encoder=_text_encoder(32), text_encoder_2=_text_encoder(32, with_projection=True),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet,
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1),
    )
    pipe.save_pretrained(target)
    return target


def build_tiny_clip(target: Path) -> Path:
    """A tiny random CLIPModel with its processor (32 px images), saved like a hub checkpoint."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=128,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1, max_position_embeddings=77),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(target)
    processor = CLIPProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
                              tokenizer=clip_tokenizer(target / "_tok"))
    processor.save_pretrained(target)
    return target
