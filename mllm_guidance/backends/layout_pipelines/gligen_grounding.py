"""What the project's two GLIGEN pipelines (SD 1.x/2.x and SDXL) share: one layout per prompt, the
position net's inputs in GLIGEN's 30 object slots, and switching the gated fusers for scheduled sampling."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mllm_guidance.backends.grounding import GLIGEN_MAX_OBJECTS

Sample = tuple[list[str], list[list[float]]]


def set_fusers(unet: Any, enabled: bool) -> None:
    """Switch GLIGEN's gated self-attention layers on or off (off after the grounded steps)."""
    for module in unet.modules():
        if type(module).__name__ == "GatedSelfAttentionDense":
            module.enabled = enabled


def per_sample(phrases: Any, boxes: Any, prompts: int) -> list[Sample]:
    """One (phrases, boxes) per prompt: a flat list grounds every prompt on the same layout, a list
    of lists gives each prompt its own."""
    phrases, boxes = list(phrases or []), list(boxes or [])
    if phrases and isinstance(phrases[0], (list, tuple)):
        if len(phrases) != prompts or len(boxes) != prompts:
            raise ValueError(f"{prompts} prompts but {len(phrases)} phrase lists and {len(boxes)} box lists: give one per prompt")
        samples = [(list(p), list(b)) for p, b in zip(phrases, boxes, strict=True)]
    else:
        samples = [(phrases, boxes)] * prompts
    for p, b in samples:
        if len(p) != len(b):
            raise ValueError(f"{len(p)} phrases for {len(b)} boxes: give one phrase per box")
    return samples


def grounding_rows(rows: list[Sample], encode: Callable[[list[str]], Any], width: int, device: Any,
                   dtype: Any) -> tuple[Any, Any, Any]:
    """Phrase embeddings (``encode(phrases)``: one row of ``width`` per phrase), boxes and masks in
    GLIGEN's 30 slots, one row per sample (a layout shared by several rows is embedded once)."""
    embeds = torch.zeros(len(rows), GLIGEN_MAX_OBJECTS, width, device=device, dtype=dtype)
    box_t = torch.zeros(len(rows), GLIGEN_MAX_OBJECTS, 4, device=device, dtype=dtype)
    masks = torch.zeros(len(rows), GLIGEN_MAX_OBJECTS, device=device, dtype=dtype)
    encoded: dict[tuple[str, ...], Any] = {}
    for i, (phrases, boxes) in enumerate(rows):
        phrases, boxes = phrases[:GLIGEN_MAX_OBJECTS], boxes[:GLIGEN_MAX_OBJECTS]
        if tuple(phrases) not in encoded:
            encoded[tuple(phrases)] = encode(phrases).to(dtype)
        n = len(phrases)
        embeds[i, :n] = encoded[tuple(phrases)]
        box_t[i, :n] = torch.tensor(boxes, device=device, dtype=dtype)
        masks[i, :n] = 1
    return embeds, box_t, masks


def position_inputs(embeds: Any, box_t: Any, masks: Any, guided: bool) -> dict[str, Any]:
    """The position net's inputs (``cross_attention_kwargs["gligen"]``); with classifier-free guidance
    the unconditional half (first, as the SD and SDXL pipelines stack it) is not grounded."""
    if not guided:
        return {"boxes": box_t, "positive_embeddings": embeds, "masks": masks}
    return {"boxes": torch.cat([box_t] * 2), "positive_embeddings": torch.cat([embeds] * 2),
            "masks": torch.cat([torch.zeros_like(masks), masks])}


def fusers_off_after(unet: Any, grounded: int) -> Callable[..., dict[str, Any]]:
    """A ``callback_on_step_end`` that switches the fusers off once ``grounded`` steps have run."""

    def after_step(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if step + 1 == grounded:
            set_fusers(unet, False)
        return tensors

    return after_step
