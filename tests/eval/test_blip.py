"""BLIP-VQA and BLIP-CLIP against their references, with tiny random-weight BLIP models (no download).

The reference computation in ``reference_p_yes`` follows, step by step, T2I-CompBench's
``BLIPvqa_eval/models/blip_vqa.py`` (``forward`` with ``inference='vqa_prob'`` and ``vqa_prob``,
Karine-Huang/T2I-CompBench @ 7710d05) and its test transform (``data/__init__.py``:
``Resize((480, 480), BICUBIC)``, ``ToTensor``, CLIP ``Normalize``), written against the transformers
modules instead of BLIP's own; torchvision's resize of a PIL image is PIL's bicubic resize.
"""

import math

import pytest

pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from mllm_guidance.eval.blip import BlipClipScorer, BlipVqaScorer, template_texts  # noqa: E402
from mllm_guidance.eval.scorers import ScoreItem  # noqa: E402
from tests.eval.conftest import BLIP_WORDS, color_items  # noqa: E402

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def reference_p_yes(scorer, image, question, first_token):
    import torch

    size = scorer.image_size
    resized = image.convert("RGB").resize((size, size), Image.BICUBIC)
    pixels = torch.frombuffer(bytearray(resized.tobytes()), dtype=torch.uint8).float().view(size, size, 3).permute(2, 0, 1) / 255
    pixels = ((pixels - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)).unsqueeze(0)
    tok = scorer.processor.tokenizer([question], padding="longest", truncation=True, max_length=35, return_tensors="pt")
    ids = tok.input_ids.clone()
    ids[:, 0] = first_token
    model = scorer.model
    with torch.inference_mode():
        image_embeds = model.vision_model(pixel_values=pixels, interpolate_pos_encoding=True)[0]
        atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
        states = model.text_encoder(input_ids=ids, attention_mask=tok.attention_mask, encoder_hidden_states=image_embeds,
                                    encoder_attention_mask=atts, return_dict=True).last_hidden_state
        start = torch.full((1, 1), model.config.text_config.bos_token_id)
        logits = model.text_decoder(input_ids=start, encoder_hidden_states=states, encoder_attention_mask=tok.attention_mask,
                                    return_dict=True).logits[:, 0, :]
        p = logits.softmax(dim=1)
    yes, no = p[0, BLIP_WORDS.index("yes")], p[0, BLIP_WORDS.index("no")]
    return float(yes / (yes + no))


def test_vqa_probability_is_the_references_with_enc_as_first_token_at_480_px(tiny_blip):
    scorer = BlipVqaScorer(tiny_blip["vqa"], questions="rules")
    enc = BLIP_WORDS.index("[DEC]") + 1  # the original vocabulary: BERT, [DEC], [ENC]
    assert scorer.enc_token_id == enc == len(scorer.processor.tokenizer)
    image = color_items()[0].image
    got = scorer.p_yes([image], ["a red hat?"])[0]
    assert got == pytest.approx(reference_p_yes(scorer, image, "a red hat?", enc), abs=1e-5)
    cls = reference_p_yes(scorer, image, "a red hat?", BLIP_WORDS.index("[CLS]"))
    assert abs(got - cls) > 1e-6  # the transformers port's [CLS] gives another number
    small = BlipVqaScorer(tiny_blip["vqa"], image_size=32, questions="rules")
    assert abs(small.p_yes([image], ["a red hat?"])[0] - got) > 1e-6  # the size matters, and 480 is what is used


def test_vqa_score_is_the_product_over_questions_batching_is_exact_and_no_question_scores_one(tiny_blip):
    one = BlipVqaScorer(tiny_blip["vqa"], batch_size=1, questions="rules", image_size=64)  # 480 px is slow on a CPU
    many = BlipVqaScorer(tiny_blip["vqa"], batch_size=5, questions="rules", image_size=64)
    for x, y in zip(one.score(color_items()), many.score(color_items()), strict=True):
        assert 0 < x["blip_vqa"] <= 1 and x["blip_vqa"] == pytest.approx(y["blip_vqa"], rel=1e-5)
    item = ScoreItem("a red hat and a brown coat rack", color_items()[0].image)
    (metrics, details), = one.score_items([item])
    assert details["questions"] == ["a red hat?", "a brown coat rack?"]
    p = one.p_yes([item.image, item.image], details["questions"])
    assert metrics["blip_vqa"] == pytest.approx(p[0] * p[1], rel=1e-5) and details["p_yes"] == pytest.approx(p, abs=1e-6)
    # questions of different lengths in one batch: each as if asked alone (the reference masks the padding)
    mixed = one.p_yes([item.image] * 3, ["a red hat?", "a brown coat rack the the the?", "a cat?"])
    alone = [one.p_yes([item.image], [q])[0] for q in ("a red hat?", "a brown coat rack the the the?", "a cat?")]
    assert mixed == pytest.approx(alone, abs=1e-6)
    # T2I-CompBench gives an image whose prompt has no noun chunk the reward 1 (every question empty)
    assert one.score([ScoreItem("on the left of", item.image)]) == [{"blip_vqa": 1.0}]


def test_a_blip_without_an_enc_slot_is_refused(tmp_path):
    import torch
    from transformers import BertTokenizerFast, BlipConfig, BlipForQuestionAnswering, BlipImageProcessorPil, BlipProcessor

    words = [w for w in BLIP_WORDS]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, bos_token="[DEC]")
    config = BlipConfig(text_config=dict(vocab_size=len(words), hidden_size=32, encoder_hidden_size=32, intermediate_size=37,
                                         num_hidden_layers=1, num_attention_heads=2, bos_token_id=words.index("[DEC]")),
                        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                                           image_size=32, patch_size=8))
    torch.manual_seed(0)
    BlipForQuestionAnswering(config).save_pretrained(tmp_path)
    BlipProcessor(image_processor=BlipImageProcessorPil(), tokenizer=tokenizer).save_pretrained(tmp_path)
    with pytest.raises(Exception, match=r"\[ENC\]"):
        BlipVqaScorer(str(tmp_path), questions="rules")


def test_blip_clip_attend_and_excite_recipe(tiny_blip, tiny_clip, monkeypatch):
    import mllm_guidance.eval.blip as module

    one = BlipClipScorer(tiny_blip["caption"], clip_model=tiny_clip, batch_size=1, generate={"max_length": 8, "min_length": 6})
    many = BlipClipScorer(tiny_blip["caption"], clip_model=tiny_clip, batch_size=3, generate={"max_length": 8, "min_length": 6})
    a, b = one.score(color_items()[:3]), many.score(color_items()[:3])
    assert all(-1 <= x["blip_clip"] <= 1 and math.isfinite(x["blip_clip"]) for x in a)
    assert [round(x["blip_clip"], 4) for x in a] == [round(y["blip_clip"], 4) for y in b]
    assert one.settings["recipe"] == "attend-and-excite" and one.generate_kwargs["num_beams"] == 3
    # the caption is compared with the prompt's template-averaged embedding
    (metrics, details), = one.score_items(color_items()[:1])
    caption_vector = module.embed_texts(one.clip, one.clip_processor, [details["caption"]], one.device)[0]
    vectors = module.embed_texts(one.clip, one.clip_processor, template_texts("a red cat"), one.device)
    mean = vectors.mean(dim=0)
    assert metrics["blip_clip"] == pytest.approx(float((caption_vector * mean / mean.norm()).sum()), abs=1e-5)


def test_blip_clip_captions_drop_the_decoder_prompt(tiny_blip, tiny_clip, monkeypatch):
    scorer = BlipClipScorer(tiny_blip["caption"], clip_model=tiny_clip, generate={"max_length": 8, "min_length": 6})
    decoded = []
    real = scorer.processor.batch_decode
    monkeypatch.setattr(scorer.processor, "batch_decode", lambda ids, **kw: decoded.extend(real(ids, **kw)) or real(ids, **kw))
    captions = scorer.captions([color_items()[0].image])
    assert decoded[0].startswith("a picture of") and captions == [decoded[0][len("a picture of "):].strip()]


def test_attend_and_excite_templates_keep_their_clean_up_quirks():
    """metrics/imagenet_utils.py @ 5f10e15 replaces the substrings "a a" and "the a" by "a"."""
    assert template_texts("a cat")[:3] == ["a bad photo of a cat.", "a photo of many a cat.", "a sculpture of a cat."]
    assert len(template_texts("a cat")) == 80
    # the plain substring replacement also joins words ("banana and" -> "bananand"), as theirs does
    assert template_texts("a banana and an apple")[0] == "a bad photo of a bananand an apple."


def test_blip_clip_with_the_thesiss_blip2_captioner(tiny_blip2, tiny_clip):
    scorer = BlipClipScorer(tiny_blip2, recipe="blip2", clip_model=tiny_clip, generate={"max_new_tokens": 4})
    assert scorer.settings["recipe"] == "blip2" and scorer.generate_kwargs["num_beams"] == 5
    results = scorer.score_items(color_items()[:2])
    assert all(-1 <= m["blip_clip"] <= 1 and isinstance(d["caption"], str) for m, d in results)
    with pytest.raises(Exception, match="recipe"):
        BlipClipScorer(tiny_blip2, recipe="blip3", clip_model=tiny_clip)


def test_the_spacy_fallback_is_said_recorded_and_can_be_refused(tiny_blip, tmp_path, monkeypatch, capsys):
    from mllm_guidance.cli import main
    from mllm_guidance.eval import phrases
    from mllm_guidance.eval.scorers import build_scorers
    from mllm_guidance.eval.tables import warnings_for

    monkeypatch.setattr(phrases, "spacy_pipeline", lambda: None)  # spaCy's English model not installed
    scorer = build_scorers(["blip-vqa"], blip_vqa_model=tiny_blip["vqa"], blip_vqa_image_size=32)[0]
    assert scorer.spacy_fallback and scorer.settings["spacy_fallback"] is True and scorer.settings["questions"] == "rules"
    assert "python -m spacy download en_core_web_sm" in scorer.notice
    record = {"status": "ok", "scoring": {"blip-vqa": {"settings": scorer.settings}}}
    assert any("rule-based questions" in w for w in warnings_for([record]))
    explicit = build_scorers(["blip-vqa"], blip_vqa_model=tiny_blip["vqa"], blip_vqa_questions="rules", blip_vqa_image_size=32)[0]
    assert explicit.notice is None and explicit.settings["spacy_fallback"] is False  # asked for, not fallen back to
    with pytest.raises(Exception, match="en_core_web_sm"):
        build_scorers(["blip-vqa"], blip_vqa_model=tiny_blip["vqa"], require_spacy=True)
    data = tmp_path / "p.txt"
    data.write_text("a red hat\n")
    base = ["bench", "--dataset", str(data), "--method", "plain", "--generator", "sketch", "--scorer", "blip-vqa",
            "--blip-vqa-model", tiny_blip["vqa"], "--blip-vqa-image-size", "32", "--quiet"]
    assert main(base + ["--require-spacy", "--out", str(tmp_path / "refused")]) == 2
    assert "en_core_web_sm" in capsys.readouterr().err and not (tmp_path / "refused" / "results.jsonl").exists()
    assert main(base + ["--out", str(tmp_path / "ran")]) == 0
    captured = capsys.readouterr()
    assert "warning: blip-vqa: spaCy's en_core_web_sm is not installed" in captured.err
    assert "rule-based questions" in captured.out  # the summary's warning line
