"""The text side of the reference scorers: BLIP-VQA's questions and CLIPScore's complex-category rule.

T2I-CompBench builds its disentangled BLIP-VQA questions with spaCy (``BLIPvqa_eval/BLIP_vqa.py``,
Karine-Huang/T2I-CompBench @ bfe6300): every noun chunk of ``en_core_web_sm`` whose text is not
``top``, ``the side``, ``the left`` or ``the right`` becomes ``"<chunk>?"`` (articles kept), the
first 8 are asked, and BLIP's ``pre_question`` lower-cases the question and drops ``.!"()*#:;~``.
Its CLIPScore for the complex category drops every token spaCy tags ``ADJ`` and joins the rest
with spaces (``CLIPScore_eval/CLIP_similarity.py`` @ c6f6b14).

spaCy is on PyPI, its English model is not: install it with

    pip install 'mllm-guidance[eval]' && python -m spacy download en_core_web_sm

Without the model, BLIP-VQA falls back to ``rule_noun_phrases``, a documented approximation of
spaCy's noun chunks (no parser, no download); the record says which one produced the questions.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from mllm_guidance.errors import InputError

SPACY_MODEL = "en_core_web_sm"
INSTALL_SPACY = f"pip install 'mllm-guidance[eval]' && python -m spacy download {SPACY_MODEL}"

#: Chunks T2I-CompBench never asks about (exact, case-sensitive match on the chunk text).
SKIPPED_CHUNKS = ("top", "the side", "the left", "the right")
#: Questions asked per prompt at most (T2I-CompBench's ``--np_num`` default).
MAX_QUESTIONS = 8


@functools.lru_cache(maxsize=1)
def spacy_pipeline() -> Any | None:
    """``en_core_web_sm`` when spaCy and the model are installed, else None."""
    try:
        import spacy

        return spacy.load(SPACY_MODEL)
    except (ImportError, OSError):
        return None


def require_spacy() -> Any:
    nlp = spacy_pipeline()
    if nlp is None:
        raise InputError(f"this option needs spaCy's {SPACY_MODEL} model: {INSTALL_SPACY}")
    return nlp


def pre_question(question: str, max_words: int = 50) -> str:
    """BLIP's question normalization (``data/utils.py`` ``pre_question``): lower case, drop
    ``.!"()*#:;~``, strip trailing spaces, at most 50 words."""
    question = re.sub(r"[.!\"()*#:;~]", "", question.lower()).rstrip(" ")
    words = question.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else question


def questions_from_chunks(chunks: Iterable[str], limit: int = MAX_QUESTIONS) -> list[str]:
    """T2I-CompBench's questions from noun-chunk texts: skipped chunks removed, the first
    ``limit`` kept, each asked as ``"<chunk>?"`` after ``pre_question``."""
    kept = [c for c in chunks if c not in SKIPPED_CHUNKS]
    return [pre_question(f"{c}?") for c in kept[:limit]]


def spacy_questions(doc: Any, limit: int = MAX_QUESTIONS) -> list[str]:
    """The questions of a spaCy ``Doc`` (its ``noun_chunks``)."""
    return questions_from_chunks((chunk.text for chunk in doc.noun_chunks), limit)


def drop_adjectives(doc: Any) -> str:
    """T2I-CompBench's complex-category CLIP text: the tokens not tagged ``ADJ``, joined by spaces
    (so punctuation ends up space-separated, as theirs does)."""
    return " ".join(token.text for token in doc if token.pos_ != "ADJ")


# -- the rule-based stand-in for spaCy's noun chunks ---------------------------------------------

#: Relations without a noun of their own; the nouns of "in front of", "on the left of" are chunks
#: for spaCy too, and T2I-CompBench's skip list removes some of them.
_RELATIONS = ["left of", "right of", "next to", "close to", "away from", "out of", "instead of"]
_BREAK_WORDS = set("""
and or but nor while where when whereas whose who whom which so because although though then
is are was were be being been am has have had do does did can could will would shall should may might must
on in at under below beneath above over behind beside besides near by inside outside into onto from upon
across along against around through throughout toward towards between among amongst beyond past via within
without with of for to as than like about after before during until till
not very too also just there here
""".split())
_PRONOUNS = set("it itself them they themselves he him himself she herself we us you i me others".split())
_DETERMINERS = set("""
a an the some any no every each another one several many few both all its their his her my your our
this that these those two three four five six seven eight nine ten eleven twelve
""".split())
_SINGULAR = {"a", "an", "this", "that", "every", "one"}
#: Finite verbs frequent in image prompts; after a noun they end its phrase.
_VERBS = set("""
sits sit stands stand lies lie rests rest hangs hang holds hold looks look plays play eats eat runs run walks walk
flies fly jumps jump swims swim sleeps sleep reads read rides ride carries carry wears wear watches watch chases chase
drinks drink leans lean perches perch floats float grazes graze hides hide contains contain covers cover faces face
waits wait climbs climb sings sing dances dance talks talk smiles smile cooks cook drives drive kicks kick throws throw
catches catch pulls pull pushes push feeds feed points point stares stare gazes gaze sails sail lands land hovers hover
stretches stretch crawls crawl kneels kneel lays lay places place shows show offers offer gives give takes take makes make
uses use fills fill blocks block surrounds surround overlooks overlook supports support touches touch hugs hug
sat stood lay ran flew ate drank swam rode strode wore saw came went fell
""".split())
#: Irregular past participles ("a cat hidden by a pillow").
_PARTICIPLES = set("""
hidden broken fallen frozen eaten taken driven written stolen woven shaken beaten bitten chosen forgotten given
ridden risen seen shown spoken torn worn thrown drawn grown known blown flown sewn sunk spun stuck hung held laid
made built left lit set put cut shut spread caught bought brought found sold told sent spent bent dug fed
""".split())
#: Nouns that look like participles.
_ING_NOUNS = set("""
building ceiling painting wedding earring string swing thing clothing railing morning evening pudding icing
lightning sibling duckling seedling stocking dumpling awning bedding frosting filling crossing landing parking
ring king wing sling spring offspring drawing carving sewing ending opening outing serving topping
""".split())
_ED_NOUNS = set("bed shed sled seabed hotbed flowerbed sofabed".split())
#: Adjectives that may come before a participle modifier ("a big sleeping cat").
_ADJECTIVES = set("""
red orange yellow green blue purple pink brown black white gray grey golden silver
big small large tiny little huge giant tall short long wide narrow thick thin fat
old young new ancient modern round square oval flat fluffy furry cute shiny fresh ripe empty full open
hot cold warm cool wet dry soft hard bright dark light heavy beautiful pretty ugly happy sad angry calm
wooden metal metallic plastic glass leather stone paper cotton woolen wool ceramic
""".split())
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['’\-][A-Za-z0-9]+)*|[^\sA-Za-z0-9]")


def rule_noun_phrases(prompt: str) -> list[str]:
    """Noun phrases of a prompt without a parser, shaped like spaCy's noun chunks: a determiner
    (kept) and its modifiers up to the noun, as the prompt writes them.

    A phrase ends at a relation, conjunction or auxiliary, at punctuation (a comma between
    adjectives stays: "the towering, majestic elephants"), at another determiner, at a finite
    verb after its noun (a list of verbs frequent in prompts, or any word followed directly by a
    determiner: "a dog chews a bone"), and at a participle after its noun ("a cat hidden by a
    pillow" -> ``["a cat", "a pillow"]``; "a man wearing a red hat and a blue shirt" ->
    ``["a man", "a red hat", "a blue shirt"]``). A participle before the noun stays ("a sleeping
    cat"). Pronouns and bare predicate adjectives ("is red") are dropped (spaCy keeps pronouns as
    chunks); a verb the lists do not know can stay inside a phrase: the price of needing no model."""
    text = prompt
    for relation in sorted(_RELATIONS, key=len, reverse=True):
        text = re.sub(rf"(?i)\b{re.escape(relation)}\b", lambda m: "," + " " * (len(m.group()) - 1), text)
    tokens = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    phrases: list[str] = []
    current: list[tuple[str, int, int]] = []
    content = 0  # content words in the current phrase
    singular = False

    def close() -> None:
        nonlocal current, content, singular
        words = [w.lower() for w, _, _ in current]
        bare_adjectives = words[0] not in _DETERMINERS and all(w in _ADJECTIVES for w in words) if words else True
        if content and not bare_adjectives:
            phrases.append(text[current[0][1] : current[-1][2]])
        current, content, singular = [], 0, False

    for i, (token, start, end) in enumerate(tokens):
        low = token.lower()
        following = tokens[i + 1][0].lower() if i + 1 < len(tokens) else ""
        if token == "," and content and _only_modifiers(current) and _is_content(following):
            current.append((token, start, end))  # "the towering, majestic elephants"
        elif not token[0].isalnum() or low in _BREAK_WORDS or low in _PRONOUNS:
            close()
        elif low in _DETERMINERS:
            if current and not content:  # "the two dogs"
                current.append((token, start, end))
            else:
                close()
                current, singular = [(token, start, end)], low in _SINGULAR
        elif content and _ends_noun(low, current, following, singular):
            close()
        elif not current and (low in _VERBS or _looks_participle(low)):
            continue  # a verb where no phrase has begun: "is holding a tray"
        else:
            current.append((token, start, end))
            content += 1
    close()
    return phrases


def _is_content(word: str) -> bool:
    return bool(word) and word[0].isalnum() and word not in _BREAK_WORDS and word not in _PRONOUNS and word not in _DETERMINERS


def _only_modifiers(current: list[tuple[str, int, int]]) -> bool:
    words = [w.lower() for w, _, _ in current if w[0].isalnum() and w.lower() not in _DETERMINERS]
    return all(w in _ADJECTIVES or _looks_participle(w) for w in words)


def _ends_noun(word: str, current: list[tuple[str, int, int]], following: str, singular: bool) -> bool:
    """Whether ``word``, coming after a content word of the current phrase, is a verb."""
    if word in _VERBS or following in _DETERMINERS:
        return True
    if _looks_participle(word):
        modifiers_only = all(w.lower() in _ADJECTIVES or w.lower() in _DETERMINERS for w, _, _ in current)
        return not (modifiers_only and _is_content(following))
    plural_verb = len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")) and "'" not in word
    return singular and plural_verb


def _looks_participle(word: str) -> bool:
    if word in _PARTICIPLES:
        return True
    if len(word) >= 5 and word.endswith("ing"):
        return word not in _ING_NOUNS
    if len(word) >= 5 and word.endswith("ed"):
        return word not in _ED_NOUNS
    return False
