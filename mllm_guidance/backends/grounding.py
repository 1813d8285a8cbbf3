"""Input handling every box-grounded diffusion backend needs, with notes for the trace.

The pipelines fail or silently drop input on what the graph can legitimately give them: sizes that
are not multiples of 8, more objects than their position net holds (GLIGEN: 30), phrases longer than
the CLIP context (77 tokens). These helpers make those cases explicit and say what they changed.
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.layout import Layout

#: Objects a GLIGEN position net can take (the size of its object slots).
GLIGEN_MAX_OBJECTS = 30


def fit_size(width: int, height: int, multiple: int = 8) -> tuple[int, int, list[str]]:
    """Round a size down to a multiple of ``multiple`` (latents are 1/8 of the image)."""
    w = max(multiple, width - width % multiple)
    h = max(multiple, height - height % multiple)
    notes = [] if (w, h) == (width, height) else [f"size {width}x{height} rounded to {w}x{h} (a multiple of {multiple})"]
    return w, h, notes


def keep_largest(layout: Layout, limit: int = GLIGEN_MAX_OBJECTS) -> tuple[Layout, list[str]]:
    """At most ``limit`` objects, keeping the largest boxes (small ones matter least to a render)."""
    if len(layout) <= limit:
        return layout, []
    kept = layout.largest(limit)
    dropped = [o.name for o in layout.objects if o not in kept.objects]
    return kept, [f"{len(layout)} objects: kept the {limit} largest, dropped {', '.join(dropped)}"]


def truncate_phrase(tokenizer: Any, phrase: str) -> tuple[str, bool]:
    """The phrase cut to what the tokenizer's model takes (with its start and end tokens)."""
    limit = int(getattr(tokenizer, "model_max_length", 77) or 77)
    if limit > 10_000:  # tokenizers without a real limit report a huge sentinel
        return phrase, False
    ids = tokenizer(phrase, add_special_tokens=False).input_ids
    room = limit - 2
    if len(ids) <= room:
        return phrase, False
    return tokenizer.decode(ids[:room]).strip(), True


def grounding_inputs(layout: Layout | None, tokenizers: list[Any]) -> tuple[list[str], list[list[float]], list[str]]:
    """(phrases, normalized corner boxes, notes) for GLIGEN-style pipelines."""
    if layout is None or layout.is_empty:
        return [], [], ["empty layout: rendered without grounding"] if layout is not None else []
    layout, notes = keep_largest(layout)
    phrases = []
    for obj in layout.objects:
        phrase, cut = obj.name, False
        for tokenizer in tokenizers:
            phrase, was_cut = truncate_phrase(tokenizer, phrase)
            cut = cut or was_cut
        if cut:
            notes.append(f"phrase {obj.name[:40]!r}... cut to the text encoder's 77 tokens")
        phrases.append(phrase)
    return phrases, [o.box.as_list() for o in layout.objects], notes
