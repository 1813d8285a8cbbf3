"""Scorers with tiny random-weight models and fake judges (no download)."""

import math

import pytest

pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from mllm_guidance.eval.scorers import ClipScorer, MllmJudge, ScoreItem, build_scorers, score_records  # noqa: E402
from tests.fakes import RecordingChatModel, score  # noqa: E402


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    from tests.backends.tiny_diffusion import clip_tokenizer

    target = tmp_path_factory.mktemp("tiny-clip")
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
    return str(target)


def items():
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (240, 240, 240), (10, 10, 10)]
    prompts = ["a red cat", "a green field", "a blue sky over the sea", "white snow", "a black night"]
    return [ScoreItem(p, Image.new("RGB", (48, 40), c)) for p, c in zip(prompts, colors)]


def test_clipscore_values_are_finite_in_range_and_batching_is_exact(tiny_clip):
    one = ClipScorer(tiny_clip, batch_size=1).score(items())
    many = ClipScorer(tiny_clip, batch_size=4).score(items())
    for a, b in zip(one, many):
        assert math.isfinite(a["clipscore_cos"]) and -1 <= a["clipscore_cos"] <= 1
        assert a["clipscore"] == pytest.approx(2.5 * max(a["clipscore_cos"], 0))
        assert a["clipscore_cos"] == pytest.approx(b["clipscore_cos"], abs=1e-5)
    assert len({round(r["clipscore_cos"], 6) for r in one}) > 1


def test_mllm_judge_uses_the_reason_rubric_and_retries():
    judge = MllmJudge(RecordingChatModel(replies={"reason": [score(4), "no idea", score(2), "???", "??", "?"]}), concurrency=1)
    results = judge.score(items()[:3])
    assert results == [{"mllm": 0.8}, {"mllm": 0.4}, {}]
    sent = judge.model.calls[0][1]
    assert "5: the image depicts all elements and all" in sent[0].content and sent[1].content[1]["type"] == "image"


def test_score_records_is_idempotent(tiny_clip, tmp_path):
    image = tmp_path / "images" / "a.png"
    image.parent.mkdir()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(image)
    records = [{"key": "a", "status": "ok", "prompt": "a red cat", "image": "images/a.png", "metrics": {}},
               {"key": "b", "status": "failed"}]
    scorers = build_scorers(["clipscore"], clip_model=tiny_clip)
    score_records(tmp_path, records, scorers)
    first = dict(records[0]["metrics"])
    score_records(tmp_path, records, scorers)
    assert set(first) == {"clipscore", "clipscore_cos"} and records[0]["metrics"] == first and "metrics" not in records[1]
    with pytest.raises(Exception, match="unknown scorer"):
        build_scorers(["fid"])


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    """Tiny random BLIP VQA and captioning models sharing one processor (BERT word-piece vocabulary)."""
    import torch
    from transformers import (BertTokenizerFast, BlipConfig, BlipForConditionalGeneration, BlipForQuestionAnswering,
                              BlipImageProcessorPil, BlipProcessor)

    root = tmp_path_factory.mktemp("tiny-blip")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "yes", "no", "?", "red", "hat", "cat", "dog", "a", "the",
             "brown", "coat", "rack", "green", "field", "blue", "sky", "sea", "over", "white", "snow", "black", "night"]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    config = BlipConfig(
        text_config=dict(vocab_size=len(words), hidden_size=32, encoder_hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, bos_token_id=words.index("[DEC]"), sep_token_id=words.index("[SEP]"), pad_token_id=0,
                         max_position_embeddings=64),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
    )
    paths = {}
    for name, cls in (("vqa", BlipForQuestionAnswering), ("caption", BlipForConditionalGeneration)):
        torch.manual_seed(0)
        cls(config).save_pretrained(root / name)
        processor.save_pretrained(root / name)
        paths[name] = str(root / name)
    return paths


def test_noun_phrases():
    from mllm_guidance.eval.blip import noun_phrases

    assert noun_phrases("The red hat was on top of the brown coat rack.") == ["red hat", "brown coat rack"]
    assert noun_phrases("A woman is holding a tray of cookies and offering them to guests.") == ["woman", "tray", "cookies", "guests"]
    assert noun_phrases("on the left of") == ["on the left of"]


def test_blip_vqa_probabilities_in_range_and_batching_is_exact(tiny_blip):
    from mllm_guidance.eval.blip import BlipVqaScorer, noun_phrases

    one = BlipVqaScorer(tiny_blip["vqa"], batch_size=1)
    many = BlipVqaScorer(tiny_blip["vqa"], batch_size=5)
    a, b = one.score(items()), many.score(items())
    for x, y in zip(a, b):
        assert 0 < x["blip_vqa"] <= 1 and x["blip_vqa"] == pytest.approx(y["blip_vqa"], rel=1e-4)
    # the product over phrases: the score of a two-phrase prompt is the product of its phrases' P(yes)
    item = ScoreItem("a red hat and a brown coat rack", items()[0].image)
    assert noun_phrases(item.prompt) == ["red hat", "brown coat rack"]
    p = one.p_yes([item.image, item.image], ["red hat?", "brown coat rack?"])
    assert one.score([item])[0]["blip_vqa"] == pytest.approx(p[0] * p[1], rel=1e-4)


def test_blip_clip_caption_similarity(tiny_blip, tiny_clip):
    from mllm_guidance.eval.blip import BlipClipScorer

    one = BlipClipScorer(tiny_blip["caption"], clip_model=tiny_clip, batch_size=1, max_new_tokens=5)
    many = BlipClipScorer(tiny_blip["caption"], clip_model=tiny_clip, batch_size=4, max_new_tokens=5)
    a, b = one.score(items()), many.score(items())
    assert all(-1 <= x["blip_clip"] <= 1 and math.isfinite(x["blip_clip"]) for x in a)
    assert [round(x["blip_clip"], 4) for x in a] == [round(y["blip_clip"], 4) for y in b]
    assert all(isinstance(c, str) for c in one.captions([items()[0].image]))
