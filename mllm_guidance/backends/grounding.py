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


def truncate_phrase(tokenizer: Any, phrase: str, limit: int | None = None, specials: int = 2) -> tuple[str, bool]:
    """The phrase cut to ``limit`` tokens (default: what the tokenizer's model takes), ``specials`` of
    them start and end tokens (CLIP: 2, T5: 1)."""
    limit = limit or int(getattr(tokenizer, "model_max_length", 77) or 77)
    if limit > 10_000:  # tokenizers without a real limit report a huge sentinel
        return phrase, False
    ids = tokenizer(phrase, add_special_tokens=False).input_ids
    room = limit - specials
    if len(ids) <= room:
        return phrase, False
    return tokenizer.decode(ids[:room]).strip(), True


def grounding_inputs(layout: Layout | None, tokenizers: list[Any], *, max_objects: int = GLIGEN_MAX_OBJECTS,
                     token_limit: int | None = None, specials: int = 2) -> tuple[list[str], list[list[float]], list[str]]:
    """(phrases, normalized corner boxes, notes) for box-grounded pipelines: at most ``max_objects``
    (the largest), each phrase cut to what every tokenizer's model takes (``token_limit`` tokens if given)."""
    if layout is None or layout.is_empty:
        return [], [], ["empty layout: rendered without grounding"] if layout is not None else []
    layout, notes = keep_largest(layout, max_objects)
    phrases = []
    for obj in layout.objects:
        phrase, cut = obj.name, False
        for tokenizer in tokenizers:
            phrase, was_cut = truncate_phrase(tokenizer, phrase, token_limit, specials)
            cut = cut or was_cut
        if cut:
            limit = token_limit or int(getattr(tokenizers[0], "model_max_length", 77) or 77)
            notes.append(f"phrase {obj.name[:40]!r}... cut to the text encoder's {limit} tokens")
        phrases.append(phrase)
    return phrases, [o.box.as_list() for o in layout.objects], notes
