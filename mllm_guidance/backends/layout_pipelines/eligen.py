"""What EliGen (Zhang et al., "EliGen: Entity-Level Controlled Image Generation with Regional
Attention", 2025) does the same on every base model, as DiffSynth-Studio does it (``diffsynth`` 2.1.12:
``process_entity_masks`` / ``construct_mask`` of its Qwen-Image and FLUX DiTs, ``preprocess_masks`` of
their pipelines, ``GeneralLoRALoader``): an entity's box as transformer tokens, the joint attention
mask over ``[entity 1, ..., entity E, prompt, image]``, and fusing a LoRA into a transformer."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def entity_token_masks(boxes: Sequence[Sequence[float]], height: int, width: int, scale: int = 8) -> torch.Tensor:
    """(entities, tokens) bool: the transformer tokens (2 x 2 latent cells, row-major) each box covers.

    The box is the pixel mask DiffSynth-Studio takes (pixels ``round(x1 * width) <= x < round(x2 *
    width)``, likewise in y), downscaled to the latent grid by nearest neighbour (a latent cell is in
    when the pixel at its centre is) and patched as ``process_entity_masks`` does: a token is in when
    any of its four latent cells is."""
    rows, cols = height // scale, width // scale
    centre_y = torch.arange(rows) * scale + scale // 2
    centre_x = torch.arange(cols) * scale + scale // 2
    masks = torch.zeros(len(boxes), rows // 2, cols // 2, dtype=torch.bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        inside_x = (centre_x >= round(x1 * width)) & (centre_x < round(x2 * width))
        inside_y = (centre_y >= round(y1 * height)) & (centre_y < round(y2 * height))
        cells = inside_y[:, None] & inside_x[None, :]
        masks[i] = cells.view(rows // 2, 2, cols // 2, 2).any(3).any(1)
    return masks.flatten(1)


def eligen_attention_mask(entity_masks: torch.Tensor, text_lens: Sequence[int],
                          valid_lens: Sequence[int] | None = None) -> torch.Tensor:
    """(T + N, T + N) bool over ``[entity 1, ..., entity E, prompt, image]``: True where a query may
    attend a key. ``entity_masks`` is (E, N); ``text_lens`` the E + 1 text block lengths (the prompt's
    last), ``valid_lens`` how many of each block's tokens are real (the rest is batch padding: no
    other token sees it, and it sees itself, so its softmax stays defined)."""
    if len(text_lens) != entity_masks.shape[0] + 1:
        raise ValueError(f"{entity_masks.shape[0]} entity masks need {entity_masks.shape[0] + 1} text lengths, got {len(text_lens)}")
    tokens = entity_masks.shape[1]
    texts = sum(text_lens)
    size = texts + tokens
    regions = torch.cat([entity_masks.bool(), torch.ones(1, tokens, dtype=torch.bool)])
    mask = torch.zeros(size, size, dtype=torch.bool)
    image = slice(texts, size)
    mask[image, image] = True
    start = 0
    padding = []
    for i, length in enumerate(text_lens):
        block = slice(start, start + length)
        mask[block, block] = True
        mask[block, image] = regions[i][None, :]
        mask[image, block] = regions[i][:, None]
        if valid_lens is not None and valid_lens[i] < length:
            padding.append(torch.arange(start + valid_lens[i], start + length))
        start += length
    if padding:
        pad = torch.cat(padding)
        mask[:, pad] = False
        mask[pad, pad] = True
    return mask


def _lora_pairs(state_dict: dict[str, torch.Tensor]) -> dict[str, tuple[str, str, str | None]]:
    """layer name -> (up/B key, down/A key, alpha key or None), for the LoRA key styles in use
    (PEFT ``lora_A``/``lora_B`` with or without ``.default``, kohya ``lora_down``/``lora_up``; a
    ``diffusion_model.`` or ``transformer.`` prefix)."""
    pairs = {}
    for key in state_dict:
        up, down = ("lora_up", "lora_down") if ".lora_up." in key else ("lora_B", "lora_A")
        if f".{up}." not in key:
            continue
        layer = key.split(f".{up}.")[0]
        for prefix in ("diffusion_model.", "transformer."):
            layer = layer.removeprefix(prefix)
        alpha = key.split(f".{up}.")[0] + ".alpha"
        pairs[layer] = (key, key.replace(f".{up}.", f".{down}."), alpha if alpha in state_dict else None)
    return pairs


def fuse_lora(transformer: torch.nn.Module, state_dict: dict[str, torch.Tensor], scale: float = 1.0) -> int:
    """Add ``scale * B @ A`` to the weight of every layer the LoRA names, as DiffSynth-Studio's
    ``GeneralLoRALoader`` fuses its LoRAs (``alpha`` keys, which its own files do not carry, scale by
    ``alpha / rank``); the number of layers fused.
    A LoRA naming a layer the transformer lacks, or of the wrong shape, is refused before any change."""
    pairs = _lora_pairs(state_dict)
    if not pairs:
        raise ValueError("no LoRA weights in this file (expected lora_A/lora_B or lora_down/lora_up keys)")
    updates = []
    for layer, (up_key, down_key, alpha_key) in pairs.items():
        try:
            module = transformer.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"the LoRA names {layer!r}, which this transformer does not have: is it a LoRA for another model?") from None
        up, down = state_dict[up_key].float(), state_dict[down_key].float()
        if alpha_key is not None:
            down = down * (state_dict[alpha_key].float() / down.shape[0])
        delta = up.flatten(1) @ down.flatten(1)
        if delta.shape != module.weight.shape:
            raise ValueError(f"the LoRA's {layer} is {tuple(delta.shape)}, the transformer's {tuple(module.weight.shape)}: "
                             "a LoRA for another model size?")
        updates.append((module, delta))
    with torch.no_grad():
        for module, delta in updates:
            module.weight += (scale * delta).to(module.weight.device, module.weight.dtype)
    return len(updates)
