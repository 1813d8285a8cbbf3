"""SiamLayout's layout tokens: each box becomes one token (SD3) or a few tokens (FLUX) made from its
phrase embedding and a Fourier embedding of its corners; empty slots get learned null features.

Parameter names follow CreatiLayout's checkpoints (``position_net.text_embedder``, ``.linears``,
``.null_positive_feature``, ``.null_position_feature``) so their weights load into this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.embeddings import PixArtAlphaTextProjection, get_fourier_embeds_from_boundingbox
from torch import nn


class BoxTokenProjection(nn.Module):
    """``phrase_dim`` given: project a pooled phrase embedding first (SD3); else the phrase embeddings are
    already token-wide, one row per phrase token (FLUX)."""

    def __init__(self, width: int, phrase_dim: int | None = None, fourier_freqs: int = 8) -> None:
        super().__init__()
        self.fourier_freqs = fourier_freqs
        position_dim = fourier_freqs * 2 * 4  # sin and cos of each of the four corners
        if phrase_dim is not None:
            self.text_embedder = PixArtAlphaTextProjection(phrase_dim, width, act_fn="silu")
        self.linears = PixArtAlphaTextProjection(width + position_dim, width // 2, out_features=width, act_fn="silu")
        self.null_positive_feature = nn.Parameter(torch.zeros(width))
        self.null_position_feature = nn.Parameter(torch.zeros(position_dim))

    def forward(self, boxes: torch.Tensor, masks: torch.Tensor, phrases: torch.Tensor) -> torch.Tensor:
        """boxes (B, N, 4), masks (B, N) with 1 for real boxes, phrases (B, N, P) or (B, N, T, width);
        returns (B, N, width) or (B, N * T, width)."""
        keep = masks.unsqueeze(-1)
        position = get_fourier_embeds_from_boundingbox(self.fourier_freqs, boxes)
        position = position * keep + (1 - keep) * self.null_position_feature.view(1, 1, -1)
        if hasattr(self, "text_embedder"):
            phrases = self.text_embedder(phrases)
            phrases = phrases * keep + (1 - keep) * self.null_positive_feature.view(1, 1, -1)
            return self.linears(torch.cat([phrases, position], dim=-1))
        batch, boxes_n, tokens, _ = phrases.shape
        position = position.unsqueeze(2).expand(-1, -1, tokens, -1)
        keep = keep.unsqueeze(-1)
        phrases = phrases * keep + (1 - keep) * self.null_positive_feature.view(1, 1, 1, -1)
        return self.linears(torch.cat([phrases, position], dim=-1)).view(batch, boxes_n * tokens, -1)


@dataclass
class BoxLayout:
    """What a pipeline hands its transformer (``joint_attention_kwargs['layout']``): boxes (B, N, 4) in
    normalized corners, masks (B, N), phrase embeddings, and the branch's weight (0 turns it off)."""

    boxes: torch.Tensor
    masks: torch.Tensor
    phrases: torch.Tensor
    scale: float = 1.0


@dataclass
class LayoutCarry:
    """The layout tokens as they pass from block to block during one transformer call."""

    tokens: torch.Tensor | None
    scale: float
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None  # FLUX: rotary embedding of [layout tokens, image]
