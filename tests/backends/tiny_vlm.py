"""Tiny random-weight vision-language models built from configs and saved like hub checkpoints.

Their answers are garbage, which is exactly what the parsers and the retry path must survive.
Qwen2.5-VL is not built here: its processor requires a video processor, which needs torchvision,
and there is no CPU build of torchvision on these machines.
"""

from __future__ import annotations

from pathlib import Path

WORDS = "user model assistant system objects score reasoning a the cat dog tree man bird 0 1 2 3 4 5 . , [ ] : -".split()


def _tokenizer(specials: list[str], template: str, **special_kwargs):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(specials + [w for w in WORDS if w not in specials])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", chat_template=template, **special_kwargs), vocab


def build_tiny_gemma3(target: Path) -> Path:
    """Gemma3ForConditionalGeneration + Gemma3Processor, about 0.05 s per short answer on a CPU."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessorPil, Gemma3Processor

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_image>", "<end_of_image>", "<image_soft_token>", "<start_of_turn>", "<end_of_turn>"]
    template = (
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<start_of_image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    tokenizer, vocab = _tokenizer(
        specials, template, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"},
    )
    processor = Gemma3Processor(image_processor=Gemma3ImageProcessorPil(size={"height": 32, "width": 32}),
                                tokenizer=tokenizer, chat_template=template, image_seq_length=4)
    config = Gemma3Config(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=16, max_position_embeddings=8192, sliding_window=64),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
        mm_tokens_per_image=4, boi_token_index=vocab["<start_of_image>"], eoi_token_index=vocab["<end_of_image>"],
        image_token_index=vocab["<image_soft_token>"], pad_token_id=0, eos_token_id=1, bos_token_id=2,
    )
    torch.manual_seed(0)
    Gemma3ForConditionalGeneration(config).save_pretrained(target)
    processor.save_pretrained(target)
    return target


def build_tiny_llava(target: Path) -> Path:
    """LlavaForConditionalGeneration (CLIP vision tower, Llama text model) + LlavaProcessor."""
    import torch
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    specials = ["<pad>", "</s>", "<s>", "<unk>", "<image>"]
    template = (
        "{% for m in messages %}{{ m['role'] | upper }}: {% if m['content'] is string %}{{ m['content'] }}{% else %}"
        "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endif %}\n"
        "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )
    tokenizer, vocab = _tokenizer(specials, template, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                  extra_special_tokens={"image_token": "<image>"})
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default", chat_template=template,
        image_token="<image>", num_additional_image_tokens=1,
    )
    config = LlavaConfig(
        text_config={"model_type": "llama", "vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 8192},
        vision_config={"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8, "projection_dim": 32},
        image_token_index=vocab["<image>"], vision_feature_select_strategy="default", vision_feature_layer=-1, pad_token_id=0,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(target)
    processor.save_pretrained(target)
    return target
