"""The multimodal VAE: per-modality encoders and decoders, an expert rule, reliability weights,
and the multimodal ELBO with sub-sampled terms (eqs. 3.2 and 3.6).

The ELBO of a subset S of modalities is E_q(z|x_S)[sum_{j in S} lambda_j log p(x_j|z)] - beta KL(q(z|x_S) || p(z))
(MVAE's form: a term reconstructs the modalities it observes). The loss is minus the sum of the
single-modality terms, the joint term and, for more than two modalities, the other subsets: all of
them up to three modalities, else ``subsets`` random ones per step (eq. 3.6). KLs are analytic; for
a mixture the joint KL is each row's own expert's KL (the rows are the thesis's construction).

Use it with your own nets (the small API of ``build_model``): give each modality an encoder
(x -> (mu, logvar)), a decoder (z -> Bernoulli logits, or 2*d numbers for a Gaussian's mean and
log-variance) and its likelihood, pick a rule and train with any weighting strategy.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from weighted_mvae.experts import Experts

LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass
class Modality:
    """One modality: its nets, how its data is scored, and its reconstruction scale lambda."""

    name: str
    encoder: nn.Module
    decoder: nn.Module
    likelihood: str = "bernoulli"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"modality {self.name!r}: likelihood must be one of {LIKELIHOODS}, not {self.likelihood!r}")


def log_likelihood(likelihood: str, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log p(x|z) per sample, summed over the features."""
    x = x.flatten(1)
    if likelihood == "bernoulli":
        return -F.binary_cross_entropy_with_logits(params, x, reduction="none").sum(-1)
    mean, logvar = params.chunk(2, dim=-1)
    logvar = logvar.clamp(-8.0, 8.0)
    return -0.5 * (math.log(2 * math.pi) + logvar + (x - mean) ** 2 / logvar.exp()).sum(-1)


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def all_subsets(count: int) -> list[tuple[int, ...]]:
    """Every non-empty subset of ``count`` modalities, singles first, the joint last."""
    return [s for k in range(1, count + 1) for s in itertools.combinations(range(count), k)]


class MultimodalVAE(nn.Module):
    """Encoders, decoders, an expert rule and the reliability weights (a buffer, sum 1)."""

    def __init__(self, modalities: Sequence[Modality], expert: str = "gpoe", *, beta: float = 1.0,
                 subsets: int | None = None) -> None:
        super().__init__()
        if len({m.name for m in modalities}) != len(modalities) or len(modalities) < 2:
            raise ValueError("give at least two modalities with different names")
        self.names = [m.name for m in modalities]
        self.encoders = nn.ModuleDict({m.name: m.encoder for m in modalities})
        self.decoders = nn.ModuleDict({m.name: m.decoder for m in modalities})
        self.likelihoods = {m.name: m.likelihood for m in modalities}
        self.scales = {m.name: m.scale for m in modalities}
        self.experts = Experts(expert)
        self.beta = beta
        self.subsets = subsets
        self.register_buffer("weights", torch.full((len(modalities),), 1.0 / len(modalities)))

    def set_weights(self, weights: torch.Tensor | Sequence[float]) -> None:
        w = torch.as_tensor(weights, dtype=self.weights.dtype, device=self.weights.device)
        if w.shape != self.weights.shape or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(f"need {len(self.names)} non-negative weights, got {w.tolist()}")
        self.weights.copy_(w / w.sum())

    def posterior(self, batch: Mapping[str, torch.Tensor], observed: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x_observed) by the expert rule, the observed modalities' weights renormalised."""
        idx = [self.names.index(n) for n in observed]
        mus, logvars = zip(*(self.encoders[n](batch[n]) for n in observed))
        return self.experts(list(mus), list(logvars), self.weights[idx])

    def decode(self, z: torch.Tensor, name: str) -> torch.Tensor:
        return self.decoders[name](z)

    def mean_output(self, z: torch.Tensor, name: str) -> torch.Tensor:
        """What a decoder generates: Bernoulli probabilities, or a Gaussian's mean."""
        params = self.decode(z, name)
        return torch.sigmoid(params) if self.likelihoods[name] == "bernoulli" else params.chunk(2, -1)[0]

    def sample_output(self, z: torch.Tensor, name: str, generator: torch.Generator | None = None) -> torch.Tensor:
        """A sample of p(x|z) for a Gaussian modality (the probabilities for a Bernoulli one)."""
        params = self.decode(z, name)
        if self.likelihoods[name] == "bernoulli":
            return torch.sigmoid(params)
        mean, logvar = params.chunk(2, -1)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + noise * (0.5 * logvar.clamp(-8.0, 8.0)).exp()

    def terms(self, rng: random.Random | None = None) -> list[tuple[int, ...]]:
        """The ELBO's subsets: singles and the joint (eq. 3.2), plus the others (eq. 3.6): all of
        them up to three modalities or when ``subsets`` is None, else ``subsets`` random ones."""
        every = all_subsets(len(self.names))
        m = len(self.names)
        middle = [s for s in every if 1 < len(s) < m]
        if self.subsets is not None and len(middle) > self.subsets:
            middle = (rng or random).sample(middle, self.subsets)
        return [s for s in every if len(s) == 1] + middle + [tuple(range(m))]

    def elbo_terms(self, batch: Mapping[str, torch.Tensor], subsets: Sequence[tuple[int, ...]] | None = None
                   ) -> dict[tuple[int, ...], dict[str, torch.Tensor]]:
        """Per subset: each observed modality's reconstruction log-likelihood and the KL, batch means."""
        out: dict[tuple[int, ...], dict[str, torch.Tensor]] = {}
        for subset in subsets or self.terms():
            names = [self.names[i] for i in subset]
            mu, logvar = self.posterior(batch, names)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            term = {n: log_likelihood(self.likelihoods[n], self.decode(z, n), batch[n]).mean() for n in names}
            term["kl"] = kl_standard_normal(mu, logvar).mean()
            out[subset] = term
        return out

    def loss(self, batch: Mapping[str, torch.Tensor], rng: random.Random | None = None) -> torch.Tensor:
        """Minus the multimodal ELBO (a batch mean), scales lambda on the reconstructions."""
        total = torch.zeros((), device=self.weights.device)
        for subset, term in self.elbo_terms(batch, self.terms(rng)).items():
            rec = sum(self.scales[self.names[i]] * term[self.names[i]] for i in subset)
            total = total - (rec - self.beta * term["kl"])
        return total


def build_model(encoders: Mapping[str, nn.Module], decoders: Mapping[str, nn.Module], *,
                likelihoods: Mapping[str, str] | None = None, scales: Mapping[str, float] | None = None,
                expert: str = "gpoe", beta: float = 1.0) -> MultimodalVAE:
    """A trainable weighted multimodal VAE from your own per-modality nets.

    >>> model = build_model({"image": my_img_enc, "text": my_txt_enc}, {"image": my_img_dec, "text": my_txt_dec},
    ...                     expert="gpoe")                                   # doctest: +SKIP
    >>> train(model, {"image": x, "text": y}, weighting=make_weighting("auto:generates-best", model.names))  # doctest: +SKIP
    """
    if set(encoders) != set(decoders):
        raise ValueError(f"encoders {sorted(encoders)} and decoders {sorted(decoders)} must name the same modalities")
    likelihoods, scales = dict(likelihoods or {}), dict(scales or {})
    mods = [Modality(n, encoders[n], decoders[n], likelihoods.get(n, "bernoulli"), scales.get(n, 1.0)) for n in encoders]
    return MultimodalVAE(mods, expert, beta=beta)
