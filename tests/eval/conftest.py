"""Tiny random-weight CLIP and BLIP models built from configs (no download), shared by the eval tests."""

from __future__ import annotations

import pytest
from PIL import Image


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    pytest.importorskip("transformers")
    from tests.backends.tiny_diffusion import build_tiny_clip

    return str(build_tiny_clip(tmp_path_factory.mktemp("tiny-clip")))


#: A BERT word-piece vocabulary laid out like transformers' BLIP tokenizers: BERT's words, then
#: [DEC] last; the weights have one more row, the original BLIP's [ENC].
BLIP_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "yes", "no", "?", "red", "hat", "cat", "dog", "a", "the",
              "brown", "coat", "rack", "green", "field", "blue", "sky", "sea", "over", "white", "snow", "black", "night",
              "picture", "of", "pillow", "man", "shirt", "[DEC]"]


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory):
    """Tiny random BLIP VQA and captioning models sharing one processor; vision trained at 32 px."""
    pytest.importorskip("transformers")
    import torch
    from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipForQuestionAnswering,
                              BlipImageProcessorPil, BlipProcessor)

    root = tmp_path_factory.mktemp("tiny-blip")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(BLIP_WORDS)}, bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    config = BlipConfig(
        text_config=dict(vocab_size=len(BLIP_WORDS) + 1, hidden_size=32, encoder_hidden_size=32, intermediate_size=37,
                         num_hidden_layers=1, num_attention_heads=2, bos_token_id=BLIP_WORDS.index("[DEC]"),
                         sep_token_id=BLIP_WORDS.index("[SEP]"), pad_token_id=0, max_position_embeddings=64),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
    )
    paths = {}
    for name, cls in (("vqa", BlipForQuestionAnswering), ("caption", BlipForConditionalGeneration)):
        torch.manual_seed(0)
        model = cls(config)
        with torch.no_grad():  # wider than the default init, so that the image visibly changes the answer
            for param in model.parameters():
                param.normal_(0.0, 0.2)
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
        paths[name] = str(root / name)
    return paths


def color_items():
    from mllm_guidance.eval.scorers import ScoreItem

    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (240, 240, 240), (10, 10, 10)]
    prompts = ["a red cat", "a green field", "a blue sky over the sea", "white snow", "a black night"]
    return [ScoreItem(p, Image.new("RGB", (48, 40), c)) for p, c in zip(prompts, colors, strict=True)]


@pytest.fixture(scope="session")
def tiny_blip2(tmp_path_factory):
    """A tiny random BLIP-2 captioner (ViT, Q-Former, OPT) with a byte-level BPE tokenizer of single bytes."""
    pytest.importorskip("transformers")
    import torch
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessorPil, GPT2TokenizerFast,
                              OPTConfig)

    # GPT-2's byte-to-character table: printable bytes map to themselves, the rest to 256 + n
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "<image>": 3}
    for char in [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]:
        vocab.setdefault(char, len(vocab))
    tokenizer = GPT2TokenizerFast(vocab=vocab, merges=[], bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                  extra_special_tokens={"image_token": "<image>"})
    config = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
        qformer_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, encoder_hidden_size=32,
                            vocab_size=100),
        text_config=OPTConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, ffn_dim=37, num_attention_heads=2,
                              word_embed_proj_dim=32, max_position_embeddings=64, bos_token_id=1, eos_token_id=1, pad_token_id=0).to_dict(),
        num_query_tokens=4, image_token_index=vocab["<image>"],
    )
    target = tmp_path_factory.mktemp("tiny-blip2")
    torch.manual_seed(0)
    Blip2ForConditionalGeneration(config).save_pretrained(target)
    Blip2Processor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer,
                   num_query_tokens=4).save_pretrained(target)
    return str(target)


def owl_tokenizer(directory):
    """A character-level CLIP tokenizer laid out like OWL's: the pad token "!" is id 0 (OWL marks a
    padded query by a first id of 0), start and end of text after it; 32 tokens a query."""
    import json

    from transformers import CLIPTokenizer

    from tests.backends.tiny_diffusion import CHARS

    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    for c in CHARS:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=32, pad_token="!")


@pytest.fixture(scope="session")
def tiny_owlv2(tmp_path_factory):
    """A tiny random OWLv2 detector saved as a checkpoint directory (loaded as the real one is), 64 px."""
    pytest.importorskip("transformers")
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessorPil, Owlv2Processor

    target = tmp_path_factory.mktemp("tiny-owlv2")
    config = Owlv2Config(
        text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=1, vocab_size=128,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, max_position_embeddings=32),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=1, image_size=64,
                           patch_size=16),
        projection_dim=32,  # OWL's class head compares text-width queries
    )
    torch.manual_seed(0)
    Owlv2ForObjectDetection(config).save_pretrained(target)
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessorPil(size={"height": 64, "width": 64}),
                               tokenizer=owl_tokenizer(target / "_tok"))
    processor.save_pretrained(target)
    return str(target)


@pytest.fixture(scope="session")
def tiny_mask2former(tmp_path_factory):
    """A tiny random Mask2Former (Swin backbone) with COCO's 80 classes, saved as a checkpoint directory."""
    pytest.importorskip("transformers")
    import torch
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessorPil, SwinConfig

    target = tmp_path_factory.mktemp("tiny-mask2former")
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=2,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32,
                               encoder_feedforward_dim=64, dim_feedforward=64, encoder_layers=1, decoder_layers=2,
                               num_attention_heads=2, num_queries=12, num_labels=80, common_stride=4)
    torch.manual_seed(0)
    Mask2FormerForUniversalSegmentation(config).save_pretrained(target)
    Mask2FormerImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 128}, size_divisor=32).save_pretrained(target)
    return str(target)
