"""Text rendering: does the image spell the text the prompt quotes? (OneIG-Bench's text axis)

Reference: OneIG-Bench/OneIG-Benchmark ``scripts/text/text_score.py`` and
``scripts/text/text_utils.py`` @ 41b4983 (2026-02-10). The same here:

- the expected text is the prompt's quoted strings joined by spaces (OneIG keeps them as a list in
  ``text_content.csv``; its ``preprocess_string`` turns that list into the same string);
- both texts go through OneIG's ``preprocess_string``: every character but letters, digits, the
  French accented letters, CJK and white space removed, white space collapsed; case kept (a
  lower-case reading of an upper-case sign is an error, as theirs);
- ``text_edit_distance``: OneIG's ED, the character Levenshtein distance of the two strings;
  ``text_exact``: OneIG's CR, 1 when that distance is 0; ``text_word_accuracy``: OneIG's WAC per
  image, the expected words found in the reading (multiset intersection, order ignored) over the
  expected words; ``text_ned``: ED over the longer string's length (0 when both are empty), the
  usual normalised edit distance, which OneIG does not print;
- the run's "OneIG text score" (``oneig_text_score``): 1 - min(100, mean ED) * (1 - mean CR) *
  (1 - WAC) / 100 with WAC pooled over words (sum of matches over sum of expected words), their
  English formula.

Known differences: OneIG reads the text with Qwen2.5-VL-7B-Instruct (its OCR prompt, greedy, 128
new tokens) on each image of a 2x2 grid; here the reader is RapidOCR (``rapidocr-onnxruntime``,
PaddleOCR's PP-OCRv4 detector and recogniser, ONNX, weights inside the wheel, CPU), its lines joined
top to bottom with spaces and its own confidence cut (0.5). A VLM reads paragraphs in its own order
and sometimes invents text; RapidOCR reads lines it can see and misses curved or stylised text, and
at some sizes drops the space between upper-case words ("SUMMERSALE": both words count as missed), so
the numbers are comparable between runs of this scorer, not with OneIG's leaderboard. Chinese text
is scored with OneIG's English rules (their Chinese mode counts characters and caps ED at 50).
A prompt without quoted text is not scored (its record says so).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mllm_guidance.errors import BackendError

if TYPE_CHECKING:
    from mllm_guidance.eval.scorers import ScoreItem

REFERENCE = "OneIG-Bench text (OneIG-Bench/OneIG-Benchmark scripts/text/text_score.py @ 41b4983)"
#: OneIG's cap on the mean edit distance in its English text score.
MAX_EDIT_DISTANCE = 100
_QUOTED = re.compile(r'"([^"]+)"|\u201c([^\u201d]+)\u201d')
_NOT_KEPT = re.compile(r"[^\u4e00-\u9fa5a-zA-Z0-9\sàâäéèêëîïôöùûüçÀÂÄÉÈÊËÎÏÔÖÙÛÜÇ]")
_CJK = re.compile(r"[\u4e00-\u9fff]")
_CJK_KEPT = re.compile(r"[\u4e00-\u9fa5a-zA-Z0-9àâäéèêëîïôöùûüçÀÂÄÉÈÊËÎÏÔÖÙÛÜÇ]")

_ENGINE: Any = None
_ENGINE_LOCK = threading.Lock()


def quoted_texts(prompt: str) -> list[str]:
    """The strings a prompt puts in double quotes (straight or curly), in order."""
    return [a or b for a, b in _QUOTED.findall(prompt) if (a or b).strip()]


def normalize(text: str) -> str:
    """OneIG's ``preprocess_string``: punctuation and symbols removed, white space collapsed; text
    with Chinese characters keeps only letters and digits, without spaces."""
    cleaned = _NOT_KEPT.sub("", text)
    if _CJK.search(cleaned):
        return "".join(_CJK_KEPT.findall(text)).strip()
    return re.sub(r"\s+", " ", cleaned).strip()


def edit_distance(a: str, b: str) -> int:
    """Character Levenshtein distance (insert, delete, substitute: cost 1 each)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def word_matches(expected: str, read: str) -> tuple[int, int]:
    """(expected words found in the reading, expected words): OneIG's multiset count."""
    want, got = Counter(expected.split()), Counter(read.split())
    return sum((want & got).values()), sum(want.values())


def text_metrics(expected: str, read: str) -> dict[str, float]:
    """The per-image metrics of a normalised expected text against a normalised reading."""
    distance = edit_distance(read, expected)
    matched, total = word_matches(expected, read)
    longest = max(len(expected), len(read))
    return {"text_word_accuracy": matched / total if total else 0.0, "text_ned": distance / longest if longest else 0.0,
            "text_edit_distance": float(distance), "text_exact": float(distance == 0)}


def oneig_text_score(records: Sequence[dict[str, Any]]) -> float | None:
    """OneIG's English text score over a run's scored records (None when none was scored)."""
    details = [((r.get("scoring") or {}).get("text-rendering") or {}) for r in records if r.get("status") == "ok"]
    scored = [(r["metrics"], d) for r, d in zip((r for r in records if r.get("status") == "ok"), details, strict=True)
              if "text_edit_distance" in (r.get("metrics") or {})]
    if not scored:
        return None
    ed = sum(m["text_edit_distance"] for m, _ in scored) / len(scored)
    cr = sum(m["text_exact"] for m, _ in scored) / len(scored)
    total = sum(d.get("expected_words", 0) for _, d in scored)
    wac = sum(d.get("matched_words", 0) for _, d in scored) / total if total else 0.0
    return 1 - min(MAX_EDIT_DISTANCE, ed) * (1 - cr) * (1 - wac) / MAX_EDIT_DISTANCE


def ocr_engine() -> Any:
    """RapidOCR's engine, loaded once per process (its ONNX weights ship inside its wheel)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as exc:
                raise BackendError(f"the text-rendering scorer needs RapidOCR: pip install 'mllm-guidance[ocr]' ({exc})") from None
            _ENGINE = RapidOCR()
        return _ENGINE


class TextRenderingScorer:
    """OCR the image and compare it with the prompt's quoted text, OneIG-Bench's way."""

    name = "text-rendering"
    keys = ("text_word_accuracy", "text_ned", "text_edit_distance", "text_exact")

    def __init__(self, min_confidence: float = 0.5) -> None:
        self.min_confidence = min_confidence
        self.engine = ocr_engine()

    @property
    def settings(self) -> dict[str, Any]:
        return {"reference": REFERENCE, "ocr": "rapidocr-onnxruntime (PP-OCRv4)", "min_confidence": self.min_confidence}

    def read(self, image: Any) -> str:
        """The image's text lines, top to bottom, joined by spaces."""
        with _ENGINE_LOCK:  # a call sets the engine's thresholds: one call at a time
            lines, _ = self.engine(image.convert("RGB"), text_score=self.min_confidence)
        return " ".join(text for _, text, _ in (lines or []))

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        return [metrics for metrics, _ in self.score_items(items)]

    def score_items(self, items: Sequence[ScoreItem]) -> list[tuple[dict[str, float], dict[str, Any]]]:
        out: list[tuple[dict[str, float], dict[str, Any]]] = []
        for item in items:
            quoted = quoted_texts(item.prompt)
            if not quoted:
                out.append(({}, {"not_applicable": "the prompt quotes no text"}))
                continue
            expected, raw = normalize(" ".join(quoted)), self.read(item.image)
            read = normalize(raw)
            matched, total = word_matches(expected, read)
            out.append((text_metrics(expected, read), {"expected": expected, "read": raw,
                                                       "matched_words": matched, "expected_words": total}))
        return out
