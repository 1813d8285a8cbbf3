"""How the modalities' reliability weights are set (thesis section 3.3).

One class per strategy, each stateful over training: ``initial(names)`` gives the weights before the
first step and ``update(model, probe)`` (after every epoch) returns new ones or None.

- ``equal``: the classic rule.
- fixed (3.3.1): ``image-x2`` = the image weighted twice the others (a_i = 2a_t), ``text-x3`` =
  3a_i = a_t, ``m2-x2`` = modality 2 twice (synthetic set); any ``NAME-xK`` with K > 0 works.
- automatic (3.3.2): from D[i, j] = JS(x_j generated from x_i || real x_j) on a probe batch
  (``generation_divergences``), eq. 3.15 scores modality i by sum_j D[i, j] (how badly it generates),
  eq. 3.16 by sum_j D[j, i] (how badly it is generated). The score s is normalised to sum 1 (for the
  ``-best`` variants s <- 1 - s, renormalised, so the weight goes to the better modality) and
  added to the weights, which are normalised again: a <- (a + s) / sum(a + s). The thesis gives the
  accumulation but not its schedule; we update once per epoch from the second epoch on, generating
  from the posterior means (deterministic, so the weights do not chase sampling noise).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from weighted_mvae.divergence import js_bernoulli, js_histogram

AUTO = ("auto:generates-best", "auto:generates-worst", "auto:generated-best", "auto:generated-worst")
_FIXED = re.compile(r"^(?P<who>[A-Za-z0-9_]+)-x(?P<k>\d+(?:\.\d+)?)$")


class Weighting:
    """The equal weights of the classic rule; the base of every strategy."""

    name = "equal"
    auto = False

    def initial(self, names: Sequence[str]) -> torch.Tensor:
        return torch.full((len(names),), 1.0 / len(names))

    def update(self, model: Any, probe: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Fixed(Weighting):
    """One modality (``image``, ``text`` or ``mK`` = the K-th) gets ``factor`` times the others' weight."""

    def __init__(self, modality: str, factor: float) -> None:
        if factor <= 0:
            raise ValueError(f"a weight factor must be positive, got {factor}")
        self.modality, self.factor = modality, factor
        self.name = f"{modality}-x{factor:g}"

    def initial(self, names: Sequence[str]) -> torch.Tensor:
        match = re.fullmatch(r"m(\d+)", self.modality)
        if self.modality in names:
            idx = list(names).index(self.modality)
        elif match and 1 <= int(match.group(1)) <= len(names):
            idx = int(match.group(1)) - 1
        else:
            raise ValueError(f"weighting {self.name!r}: no modality {self.modality!r} among {list(names)}")
        w = torch.ones(len(names))
        w[idx] = self.factor
        return w / w.sum()


class Auto(Weighting):
    """Eq. 3.15 (``generates``) or eq. 3.16 (``generated``), weight to the ``best`` or the ``worst``."""

    auto = True

    def __init__(self, direction: str, prefer: str) -> None:
        if direction not in ("generates", "generated") or prefer not in ("best", "worst"):
            raise ValueError(f"unknown automatic weighting {direction}-{prefer}")
        self.direction, self.prefer = direction, prefer
        self.name = f"auto:{direction}-{prefer}"
        self.current: torch.Tensor | None = None
        self.history: list[list[float]] = []

    def initial(self, names: Sequence[str]) -> torch.Tensor:
        self.current = super().initial(names)
        self.history = [self.current.tolist()]
        return self.current

    def scores(self, divergences: torch.Tensor) -> torch.Tensor:
        """The per-modality factor from D[i, j] (source i, target j), normalised to sum 1."""
        s = divergences.sum(1) if self.direction == "generates" else divergences.sum(0)
        s = s / s.sum().clamp_min(1e-12)
        if self.prefer == "best":
            s = (1.0 - s) / (1.0 - s).sum().clamp_min(1e-12)
        return s

    def step(self, divergences: torch.Tensor) -> torch.Tensor:
        """One accumulation: a <- normalise(a + scores(D))."""
        if self.current is None:
            self.initial([str(i) for i in range(divergences.shape[0])])
        a = self.current + self.scores(divergences.cpu().double()).float()
        self.current = a / a.sum()
        self.history.append(self.current.tolist())
        return self.current

    def update(self, model: Any, probe: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.step(generation_divergences(model, probe))


@torch.no_grad()
def generation_divergences(model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """D[i, j]: JS of modality j generated from modality i alone vs the real x_j (figures 3.2-3.3).
    Bernoulli modalities are compared pairwise (``js_bernoulli``), Gaussian ones by histograms of
    decoder samples (``js_histogram``)."""
    names = model.names
    out = torch.zeros(len(names), len(names))
    for i, source in enumerate(names):
        mu, logvar = model.posterior(batch, [source])
        for j, target in enumerate(names):
            if model.likelihoods[target] == "bernoulli":
                out[i, j] = js_bernoulli(model.mean_output(mu, target), batch[target].flatten(1))
            else:
                z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
                out[i, j] = js_histogram(model.sample_output(z, target), batch[target])
    return out


def make_weighting(name: str, names: Sequence[str] | None = None) -> Weighting:
    """A strategy by its name: ``equal``, ``NAME-xK`` (``image-x2``, ``text-x3``, ``m1-x2``) or
    one of ``auto:generates-best|worst``, ``auto:generated-best|worst``."""
    if name == "equal":
        return Weighting()
    if name in AUTO:
        direction, prefer = name.removeprefix("auto:").split("-")
        return Auto(direction, prefer)
    match = _FIXED.match(name)
    if not match:
        raise ValueError(f"unknown weighting {name!r}; use equal, NAME-xK (image-x2, text-x3, m1-x2) or one of {', '.join(AUTO)}")
    weighting = Fixed(match.group("who"), float(match.group("k")))
    if names is not None:
        weighting.initial(names)  # checks the modality exists
    return weighting
