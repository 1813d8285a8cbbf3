"""The redaction's fast pre-check (issue 25) changes nothing: every text is masked exactly as the
patterns alone mask it."""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from mllm_guidance import redact as R


def masked_by_the_patterns_alone(text: str, secrets: list[str]) -> str:
    """The masking without any pre-check: every pattern on every text."""
    for value in secrets:
        if value in text:
            text = text.replace(value, R.MASK)
    text = R._KEY_SHAPES.sub(R.MASK, text)
    text = R._URL_USERINFO.sub(lambda m: m.group(1) + R.MASK + "@", text)
    text = R._QUERY_SECRET.sub(lambda m: m.group(1) + R.MASK, text)
    return R._HEADER_SECRET.sub(lambda m: (m.group(1) or m.group(2)) + R.MASK, text)


KEYS = ["sk-" + "a1" * 10, "AIza" + "B" * 32, "hf_" + "c" * 24, "lsv2_" + "d_" * 12, "gsk_" + "e" * 22,
        "xai-" + "f" * 22, "ghp_" + "g" * 22, "gho_" + "h" * 22, "ghu_" + "i" * 22, "ghs_" + "j" * 22,
        "ghr_" + "k" * 22, "github_pat_" + "l_" * 12, "AKIA" + "M" * 16, "xoxb-" + "n" * 12, "xoxp-1234-5678-90"]
FRAGMENTS = KEYS + [
    "Bearer abcdef123456", "bEaReR zzzzzzzz", "x-api-key: secretvalue", "API-KEY=abc123", "x-goog-api-key\":\"v\"",
    "apı-key: dotless", "ſk-", "https://user:pw@host/path", "http://h/x?key=abc&token=def", "?sig=1;pass=2",
    "=", "://", "@", "?", "&", ";", " ", "\n", "a man sitting [0.1, 0.5]", "ı", "ſ", "K", "é", "sk", "gh_", "xo",
    "AIz", "hf", "bear", "api", "-key", "key", "token", "PLANTED-SECRET-VALUE-1234",
]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=6), max_size=12))
def test_the_precheck_masks_exactly_what_the_patterns_mask(parts):
    text = "".join(parts)
    secrets = ["PLANTED-SECRET-VALUE-1234"]
    assert R.redact_text(text, secrets) == masked_by_the_patterns_alone(text, secrets)


def test_every_key_shape_starts_with_a_listed_prefix():
    alternatives = R._KEY_SHAPES.pattern.strip("()").split("|")
    assert len(alternatives) == 10
    for alternative in alternatives:
        literal = re.match(r"[A-Za-z0-9_-]*", alternative).group(0)
        starts = [literal]
        bracket = re.match(r"\[([a-z]+)\]([A-Za-z0-9_-]*)", alternative[len(literal):])
        if bracket:  # gh[pousr]_ and xox[abposr]-: one start per letter of the class
            starts = [literal + c + bracket.group(2) for c in bracket.group(1)]
        assert all(any(start.startswith(p) for p in R.KEY_PREFIXES) for start in starts), alternative
    for key in KEYS:
        assert R.redact_text(f"key {key} here", []) == "key *** here", key


def test_secret_environment_values_follow_the_environment(monkeypatch):
    monkeypatch.setenv("MY_SERVICE_API_KEY", "first-value-123")
    assert "first-value-123" in R.secret_values()
    monkeypatch.setenv("MY_SERVICE_API_KEY", "second-value-456")
    assert "second-value-456" in R.secret_values() and "first-value-123" not in R.secret_values()
    monkeypatch.delenv("MY_SERVICE_API_KEY")
    assert "second-value-456" not in R.secret_values()
