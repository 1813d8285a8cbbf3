"""The text-rendering scorer on RapidOCR's real weights (they ship inside its wheel), and OneIG's rules."""

import pytest
from PIL import Image, ImageDraw, ImageFont

from mllm_guidance.eval.scorers import ScoreItem, build_scorers, score_records
from mllm_guidance.eval.tables import summarize
from mllm_guidance.eval.text_rendering import (
    edit_distance,
    normalize,
    oneig_text_score,
    quoted_texts,
    text_metrics,
    word_matches,
)


def sign(*lines: str, size=(640, 256)) -> Image.Image:
    """Known text drawn with Pillow's own font, black on white."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=48)
    for i, line in enumerate(lines):
        draw.text((30, 40 + 100 * i), line, fill="black", font=font)
    return image


def textless() -> Image.Image:
    """A picture without text: a sky gradient, a sun and a hill."""
    image = Image.new("RGB", (384, 256))
    draw = ImageDraw.Draw(image)
    for y in range(256):
        draw.line([(0, y), (383, y)], fill=(90 + y // 4, 150 + y // 5, 230 - y // 3))
    draw.ellipse((270, 30, 340, 100), fill=(250, 210, 60))
    draw.polygon([(0, 256), (120, 150), (260, 200), (384, 140), (384, 256)], fill=(60, 140, 70))
    return image


def test_quoted_text_and_oneigs_normalisation():
    assert quoted_texts('A shop sign reading "OPEN DAILY" and a mug saying \u201cFresh Coffee\u201d, "" ignored') == [
        "OPEN DAILY", "Fresh Coffee"]
    assert quoted_texts("a cat's hat, no quotes") == []
    assert normalize("  Source: Trade, 2024!\n(ok) ") == "Source Trade 2024 ok"  # punctuation gone, case kept
    assert normalize("Café crème") == "Café crème"
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3 and edit_distance("ab", "ab") == 0
    assert word_matches("the cat the hat", "hat the dog") == (2, 4)  # a multiset: "the" counted once in the reading
    got = text_metrics("OPEN DAILY", "OPEN DAlLY")
    assert got == {"text_word_accuracy": 0.5, "text_ned": 0.1, "text_edit_distance": 1.0, "text_exact": 0.0}
    assert text_metrics("", "")["text_ned"] == 0.0


def test_oneigs_run_score_pools_words_and_caps_the_edit_distance():
    def record(ed, exact, matched, words):
        return {"status": "ok", "metrics": {"text_edit_distance": ed, "text_exact": exact},
                "scoring": {"text-rendering": {"matched_words": matched, "expected_words": words}}}

    records = [record(0.0, 1.0, 2, 2), record(300.0, 0.0, 1, 8), {"status": "ok", "metrics": {}}]
    # mean ED 150 -> capped at 100; CR 0.5; WAC pooled 3/10
    assert oneig_text_score(records) == pytest.approx(1 - 100 * 0.5 * 0.7 / 100)
    assert oneig_text_score([{"status": "ok", "metrics": {}}]) is None


def test_pil_drawn_text_is_read_back_exactly_on_real_weights():
    scorer = build_scorers(["text-rendering"])[0]
    items = [ScoreItem('a storefront with a sign that says "OPEN DAILY" above "Fresh Coffee 24h"',
                       sign("OPEN DAILY", "Fresh Coffee 24h")),
             ScoreItem('a poster reading "SUMMER SALE"', sign("SUMMER SALE")),
             ScoreItem('a hillside at noon with a sign saying "WELCOME HOME"', textless())]
    (first, first_details), (second, _), (third, third_details) = scorer.score_items(items)
    assert first == {"text_word_accuracy": 1.0, "text_ned": 0.0, "text_edit_distance": 0.0, "text_exact": 1.0}
    assert first_details["read"] == "OPEN DAILY Fresh Coffee 24h" and first_details["expected_words"] == 5
    assert second["text_exact"] == 1.0
    # no text in the image: nothing read, no word right, every character missing
    assert third == {"text_word_accuracy": 0.0, "text_ned": 1.0, "text_edit_distance": float(len("WELCOME HOME")),
                     "text_exact": 0.0}
    assert third_details["read"] == ""


def test_a_wrong_word_costs_its_share_and_prompts_without_quotes_are_not_scored(tmp_path):
    (tmp_path / "images").mkdir()
    sign("OPEN NIGHTLY").save(tmp_path / "images" / "a.png")
    textless().save(tmp_path / "images" / "b.png")
    records = [{"key": "a", "status": "ok", "prompt": 'a sign "OPEN DAILY"', "image": "images/a.png", "metrics": {}},
               {"key": "b", "status": "ok", "prompt": "a quiet hill", "image": "images/b.png", "metrics": {}}]
    scorers = build_scorers(["text-rendering"])
    score_records(tmp_path, records, scorers)
    a, b = records
    assert a["metrics"]["text_word_accuracy"] == 0.5 and a["metrics"]["text_exact"] == 0.0
    assert a["metrics"]["text_edit_distance"] == edit_distance("OPEN NIGHTLY", "OPEN DAILY")
    assert b["metrics"] == {} and b["scoring"]["text-rendering"]["not_applicable"]

    class Counting(type(scorers[0])):
        calls = 0

        def read(self, image):
            Counting.calls += 1
            return super().read(image)

    score_records(tmp_path, records, [Counting()])  # the same settings: neither image is read again
    assert Counting.calls == 0
    row = summarize(records)
    assert row["Text word accuracy: OneIG-Bench (OCR)"] == 0.5 and row["text images scored"] == 1
    assert "text-rendering: rapidocr" in row["scorers"]
