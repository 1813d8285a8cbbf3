"""Per-modality encoders and decoders: small fully connected nets, as the field writes them.

An encoder maps ``x`` (``batch x features``) to ``(mu, logvar)`` of q_i(z|x_i); a decoder maps ``z`` to
the parameters of p(x_i|z): Bernoulli logits (images, labels) or a Gaussian's mean and log-variance.

Architectures. The synthetic set: one hidden layer of 5 neurons for every encoder and decoder, latent
size 1 (thesis, section 3.4). MNIST / Fashion-MNIST: the thesis does not give them; we chose Wu &
Goodman's MVAE MLPs (mhw32/multimodal-vae-public, mnist/model.py) made smaller so that a table's
90 trainings fit the 2-core budget: image 784 -> 512 -> (mu, logvar) and back, label (one-hot of
10) -> 64 -> (mu, logvar) and back, Swish (SiLU) activations, latent size 20.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers of ``sizes`` with SiLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """x -> hidden layers -> (mu, logvar) of a diagonal Gaussian over ``latent`` dimensions."""

    def __init__(self, features: int, hidden: Sequence[int], latent: int) -> None:
        super().__init__()
        self.net = mlp([features, *hidden, 2 * latent])
        self.latent = latent

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net(x.flatten(1)).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 12.0)


class MLPDecoder(nn.Module):
    """z -> hidden layers -> ``outputs`` numbers (Bernoulli logits; or mean and log-variance halves)."""

    def __init__(self, latent: int, hidden: Sequence[int], outputs: int) -> None:
        super().__init__()
        self.net = mlp([latent, *hidden, outputs])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def image_nets(latent: int = 20, hidden: Sequence[int] = (512,), pixels: int = 784) -> tuple[nn.Module, nn.Module]:
    """The image modality's encoder and decoder (Bernoulli logits over the pixels)."""
    return MLPEncoder(pixels, hidden, latent), MLPDecoder(latent, tuple(reversed(hidden)), pixels)


def label_nets(latent: int = 20, hidden: Sequence[int] = (64,), classes: int = 10) -> tuple[nn.Module, nn.Module]:
    """The text modality: the class as a one-hot vector in, Bernoulli logits over it out."""
    return MLPEncoder(classes, hidden, latent), MLPDecoder(latent, tuple(reversed(hidden)), classes)


def scalar_nets(latent: int = 1, hidden: int = 5) -> tuple[nn.Module, nn.Module]:
    """A 1-D Gaussian modality of the synthetic set: 5-neuron nets, a Gaussian decoder."""
    return MLPEncoder(1, (hidden,), latent), MLPDecoder(latent, (hidden,), 2)
