"""A tiny random-weight Qwen-Image pipeline built from configs and saved like the hub checkpoint:
a one-block ``QwenImageTransformer2DModel``, a one-layer Qwen2.5-VL text encoder (with a token-free
vision tower), a byte-level ``Qwen2Tokenizer`` without merges (one token per byte) and an 8x
``AutoencoderKLQwenImage``, so a 64 x 64 image is a 4 x 4 grid of transformer tokens."""

from __future__ import annotations

import json
from pathlib import Path

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEXT_WIDTH = 32


def _byte_chars() -> list[str]:
    """GPT-2's byte-to-unicode table (the alphabet of every byte-level BPE vocabulary)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def qwen_tokenizer(directory: Path):
    from transformers import Qwen2Tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(_byte_chars())}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = Qwen2Tokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), unk_token=None,
                               bos_token=None, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    return tokenizer


def qwen_text_encoder(vocab_size: int):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=TEXT_WIDTH, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048, rope_theta=1e6,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, bos_token_id=None, eos_token_id=0),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=TEXT_WIDTH,
                           fullatt_block_indexes=[0]),
        vocab_size=vocab_size, image_token_id=vocab_size - 1, video_token_id=vocab_size - 1, bos_token_id=None, eos_token_id=0,
    )
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config)


def qwen_vae():
    import torch
    from diffusers import AutoencoderKLQwenImage

    torch.manual_seed(0)
    return AutoencoderKLQwenImage(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                                  temperal_downsample=[False, True, True])


def qwen_scheduler():
    """Qwen-Image's own scheduler config: exponential dynamic shift and a 0.02 terminal."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256, base_shift=0.5, max_image_seq_len=8192, max_shift=0.9, num_train_timesteps=1000, shift=1.0,
        shift_terminal=0.02, time_shift_type="exponential", use_dynamic_shifting=True,
    )


def qwen_transformer(layers: int = 1):
    import torch
    from diffusers import QwenImageTransformer2DModel

    torch.manual_seed(0)
    return QwenImageTransformer2DModel(patch_size=2, in_channels=64, out_channels=16, num_layers=layers, attention_head_dim=16,
                                       num_attention_heads=2, joint_attention_dim=TEXT_WIDTH, axes_dims_rope=(4, 6, 6))


def build_tiny_qwen_image(target: Path, layers: int = 1) -> Path:
    """A ``QwenImagePipeline`` folder (what ``Qwen/Qwen-Image`` holds, at toy size)."""
    from diffusers import QwenImagePipeline

    tokenizer = qwen_tokenizer(target / "_tok")
    QwenImagePipeline(scheduler=qwen_scheduler(), vae=qwen_vae(), text_encoder=qwen_text_encoder(len(tokenizer)),
                      tokenizer=tokenizer, transformer=qwen_transformer(layers)).save_pretrained(target)
    return target
