"""BLIP-VQA's questions and CLIPScore's complex rule, on spaCy Docs built by hand.

The reference (Karine-Huang/T2I-CompBench BLIPvqa_eval/BLIP_vqa.py @ bfe6300) parses with
``en_core_web_sm``, which is not installable here: these Docs carry the words, POS tags, heads and
dependency labels that model gives such sentences, and spaCy's own English ``noun_chunks`` runs on
them, so the chunk-to-question logic is exercised exactly as in the reference.
"""

import pytest

from mllm_guidance.eval.phrases import (drop_adjectives, pre_question, questions_from_chunks, rule_noun_phrases,
                                        spacy_questions)

spacy = pytest.importorskip("spacy")


def doc(words, pos, heads, deps):
    from spacy.tokens import Doc

    return Doc(spacy.blank("en").vocab, words=words, pos=pos, heads=heads, deps=deps)


def hat_on_rack():
    # "The red hat was on top of the brown coat rack ."
    return doc(["The", "red", "hat", "was", "on", "top", "of", "the", "brown", "coat", "rack", "."],
               ["DET", "ADJ", "NOUN", "AUX", "ADP", "NOUN", "ADP", "DET", "ADJ", "NOUN", "NOUN", "PUNCT"],
               [2, 2, 3, 3, 3, 4, 5, 10, 10, 10, 6, 3],
               ["det", "amod", "nsubj", "ROOT", "prep", "pobj", "prep", "det", "amod", "compound", "pobj", "punct"])


def test_spacy_chunks_become_questions_with_articles_kept_and_skipped_chunks_removed():
    d = hat_on_rack()
    assert [c.text for c in d.noun_chunks] == ["The red hat", "top", "the brown coat rack"]
    assert spacy_questions(d) == ["the red hat?", "the brown coat rack?"]  # "top" is on their skip list
    cat = doc(["a", "cat", "hidden", "by", "a", "pillow"], ["DET", "NOUN", "VERB", "ADP", "DET", "NOUN"],
              [1, 1, 1, 2, 5, 3], ["det", "ROOT", "acl", "agent", "det", "pobj"])
    assert spacy_questions(cat) == ["a cat?", "a pillow?"]
    left = doc(["a", "cat", "on", "the", "left", "of", "a", "dog"], ["DET", "NOUN", "ADP", "DET", "NOUN", "ADP", "DET", "NOUN"],
               [1, 1, 1, 4, 2, 4, 7, 5], ["det", "ROOT", "prep", "det", "pobj", "prep", "det", "pobj"])
    assert spacy_questions(left) == ["a cat?", "a dog?"]


def test_at_most_eight_questions_and_the_skip_list_is_exact():
    chunks = [f"the thing{i}" for i in range(10)]
    assert questions_from_chunks(chunks) == [f"the thing{i}?" for i in range(8)]
    assert questions_from_chunks(["top", "The left", "the side", "the right", "the bottom"]) == ["the left?", "the bottom?"]
    assert questions_from_chunks([]) == []


def test_pre_question_is_blips():
    assert pre_question('A "Red" (big) hat: yes!?') == "a red big hat yes?"
    assert pre_question(" ".join(["w"] * 60)) == " ".join(["w"] * 50)


def test_drop_adjectives_is_t2i_compbenchs_complex_rule():
    d = doc(["a", "red", "cat", ",", "and", "a", "tall", "dog"], ["DET", "ADJ", "NOUN", "PUNCT", "CCONJ", "DET", "ADJ", "NOUN"],
            [2, 2, 2, 2, 2, 7, 7, 2], ["det", "amod", "ROOT", "punct", "cc", "det", "amod", "conj"])
    assert drop_adjectives(d) == "a cat , and a dog"


def test_blip_vqa_asks_spacys_questions_when_the_model_is_there(monkeypatch, tiny_blip):
    from mllm_guidance.eval import phrases
    from mllm_guidance.eval.blip import BlipVqaScorer

    monkeypatch.setattr(phrases, "spacy_pipeline", lambda: (lambda text: hat_on_rack()))
    scorer = BlipVqaScorer(tiny_blip["vqa"])
    assert scorer.settings["questions"] == "spacy"
    assert scorer.questions("The red hat was on top of the brown coat rack.") == ["the red hat?", "the brown coat rack?"]
    monkeypatch.setattr(phrases, "spacy_pipeline", lambda: None)
    assert BlipVqaScorer(tiny_blip["vqa"]).settings["questions"] == "rules"
    with pytest.raises(Exception, match="en_core_web_sm"):
        BlipVqaScorer(tiny_blip["vqa"], questions="spacy")


def test_clipscore_complex_rule_embeds_the_prompt_without_adjectives(monkeypatch, tiny_clip):
    import mllm_guidance.eval.clipscore as module
    from mllm_guidance.eval import phrases
    from mllm_guidance.eval.scorers import ScoreItem

    red_cat = doc(["a", "red", "cat"], ["DET", "ADJ", "NOUN"], [2, 2, 2], ["det", "amod", "ROOT"])
    monkeypatch.setattr(phrases, "spacy_pipeline", lambda: (lambda text: red_cat))
    seen = []
    real = module.embed_texts
    monkeypatch.setattr(module, "embed_texts", lambda clip, proc, texts, device: seen.append(list(texts)) or real(clip, proc, texts, device))
    from PIL import Image

    module.ClipScorer(tiny_clip, complex_rule=True).score([ScoreItem("a red cat", Image.new("RGB", (8, 8)))])
    assert seen == [["a cat"], ["A photo depicts a red cat"]]  # the rule is T2I-CompBench's, not Hessel's


@pytest.mark.parametrize("prompt, phrases", [
    ("a cat hidden by a pillow", ["a cat", "a pillow"]),
    ("a man wearing a red hat and a blue shirt", ["a man", "a red hat", "a blue shirt"]),
    ("The red hat was on top of the brown coat rack.", ["The red hat", "top", "the brown coat rack"]),
    ("A woman is holding a tray of cookies and offering them to guests.", ["A woman", "a tray", "cookies", "guests"]),
    ("a big sleeping cat on a wooden table", ["a big sleeping cat", "a wooden table"]),
    ("Two dogs play in a park.", ["Two dogs", "a park"]),
    ("a dog chews a bone", ["a dog", "a bone"]),
    ("a painting on a wall", ["a painting", "a wall"]),
    ("a man wearing glasses", ["a man", "glasses"]),
    ("her hat is red", ["her hat"]),
    ("The towering, majestic elephants strode through the savanna",
     ["The towering, majestic elephants", "the savanna"]),
    ("a black-and-white cat's toy near the sofa", ["a black-and-white cat's toy", "the sofa"]),
])
def test_rule_based_noun_phrases_are_shaped_like_spacys_chunks(prompt, phrases):
    assert rule_noun_phrases(prompt) == phrases
