"""The expert rules of thesis chapter 3 (eqs. 3.3-3.14) as pure functions of tensors.

Every rule takes the per-modality Gaussians ``mus[i]``, ``logvars[i]`` (each ``batch x latent``) of
the modalities that are observed, and their reliability weights ``weights`` (one per modality,
summing to 1 as the thesis normalises them), and returns the joint Gaussian ``(mu, logvar)``.

- ``poe``: product of experts with the prior expert N(0, I) (Wu & Goodman's MVAE; eqs. 3.3-3.5).
- ``gpoe``: generalised PoE (Cao & Fleet; eqs. 3.10-3.12): expert i raised to a_i. Where the thesis is
  silent we chose: the weights of the *observed* experts are renormalised and rescaled to average 1
  (a_i * M / sum a), so equal weights are exactly PoE and a single observed modality is unweighted;
  the prior expert keeps weight 1 (it is not a modality and has no reliability). Why renormalise:
  with one fixed exponent per modality in every ELBO term, a_i * T_i is only a change of scale of
  encoder i's variance, which training absorbs, and fixed weighting would do nothing at all.
- ``moe``: mixture of experts built as the thesis does (eqs. 3.7-3.9): row n of the batch takes
  expert i's mu and Sigma for the i-th 1/M share of the rows, in order.
- ``gmoe``: the weighted form (eqs. 3.13-3.14, figure 3.1): modality i supplies the rows
  N*(a_1+...+a_{i-1}) .. N*(a_1+...+a_i), boundaries rounded to whole rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

RULES = ("poe", "gpoe", "moe", "gmoe")
_EPS = 1e-8


def _as_weights(weights: torch.Tensor | Sequence[float] | None, count: int, like: torch.Tensor) -> torch.Tensor:
    if weights is None:
        return torch.full((count,), 1.0 / count, dtype=like.dtype, device=like.device)
    w = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    if w.shape != (count,):
        raise ValueError(f"expected {count} weights, one per observed modality, got shape {tuple(w.shape)}")
    if bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {w.tolist()}")
    return w / w.sum()


def gpoe(mus: Sequence[torch.Tensor], logvars: Sequence[torch.Tensor],
         weights: torch.Tensor | Sequence[float] | None = None, *, prior: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision-weighted product: mu = sum(mu_i a_i T_i) / sum(a_i T_i), Sigma = 1 / sum(a_i T_i),
    with a_i the given weights normalised to sum M (the number of given experts)."""
    w = _as_weights(weights, len(mus), mus[0]) * len(mus)
    precision = torch.zeros_like(mus[0])
    weighted_mu = torch.zeros_like(mus[0])
    if prior:  # N(0, I): precision 1, mean 0
        precision = precision + 1.0
    for a, mu, logvar in zip(w, mus, logvars):
        t = a * torch.exp(-logvar)
        precision = precision + t
        weighted_mu = weighted_mu + mu * t
    var = 1.0 / (precision + _EPS)
    return weighted_mu * var, torch.log(var)


def poe(mus: Sequence[torch.Tensor], logvars: Sequence[torch.Tensor],
        weights: torch.Tensor | Sequence[float] | None = None, *, prior: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The classic product of experts with the prior expert (weights are ignored)."""
    return gpoe(mus, logvars, None, prior=prior)


def row_owners(rows: int, weights: torch.Tensor | Sequence[float] | None, count: int,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Which expert supplies each of ``rows`` batch rows (figure 3.1): contiguous shares in order,
    modality i taking rows round(N*cum_{i-1}) .. round(N*cum_i)."""
    w = _as_weights(weights, count, torch.zeros((), dtype=torch.float64))
    bounds = torch.round(torch.cumsum(w, 0) * rows).long()
    bounds[-1] = rows
    return torch.bucketize(torch.arange(rows), bounds, right=True).clamp_max(count - 1).to(device)


def gmoe(mus: Sequence[torch.Tensor], logvars: Sequence[torch.Tensor],
         weights: torch.Tensor | Sequence[float] | None = None, *, prior: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mixture by row shares: row n of the result is expert owner(n)'s row n. The shares
    are the weights renormalised over the observed experts (a mixture sums to 1); ``prior`` is
    accepted for one signature: a mixture has no prior expert."""
    owners = row_owners(mus[0].shape[0], weights, len(mus), mus[0].device)
    stacked_mu, stacked_lv = torch.stack(list(mus)), torch.stack(list(logvars))
    pick = owners.view(1, -1, 1).expand(1, -1, mus[0].shape[1])
    return stacked_mu.gather(0, pick)[0], stacked_lv.gather(0, pick)[0]


def moe(mus: Sequence[torch.Tensor], logvars: Sequence[torch.Tensor],
        weights: torch.Tensor | Sequence[float] | None = None, *, prior: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The classic mixture: equal 1/M row shares (weights are ignored)."""
    return gmoe(mus, logvars, None, prior=prior)


class Experts:
    """One expert rule by name (``poe``, ``gpoe``, ``moe``, ``gmoe``), called on the observed
    modalities' Gaussians and their weights. ``Experts("poe", weighted=True)`` is ``gpoe``: the
    tables name the classic rule and weight it with every row but the equal one."""

    _FUNCS = {"poe": poe, "gpoe": gpoe, "moe": moe, "gmoe": gmoe}

    def __init__(self, rule: str, *, weighted: bool = False) -> None:
        if rule not in self._FUNCS:
            raise ValueError(f"unknown expert rule {rule!r}; choose one of {', '.join(RULES)}")
        if weighted and rule in ("poe", "moe"):
            rule = "g" + rule
        self.rule = rule
        self.family = rule.removeprefix("g")

    def __call__(self, mus: Sequence[torch.Tensor], logvars: Sequence[torch.Tensor],
                 weights: torch.Tensor | Sequence[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._FUNCS[self.rule](mus, logvars, weights)

    def __repr__(self) -> str:
        return f"Experts({self.rule!r})"
