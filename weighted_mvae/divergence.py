"""Jensen-Shannon divergence estimates (natural log, so 0 <= JS <= ln 2 ~ 0.693).

The thesis does not say how it estimates JS; we chose:
- between two *samples* of a 1-D variable (the synthetic set): histograms on 30 shared equal-width
  bins spanning the real sample's 0.5-99.5 percentiles, values outside counted in the edge bins;
- between generated and real *paired* binary-valued data (pixels in [0, 1], one-hot labels): each
  element read as a Bernoulli probability, JS(Bern(p) || Bern(q)) averaged over elements and rows.
"""

from __future__ import annotations

import torch

_EPS = 1e-7


def js_discrete(p: torch.Tensor, q: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """JS between discrete distributions along ``dim`` (each already summing to 1)."""
    m = 0.5 * (p + q)

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a * (torch.log(a + _EPS) - torch.log(b + _EPS))).sum(dim)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def js_bernoulli(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Mean over all elements of JS(Bern(p) || Bern(q)) (p, q probabilities of the same shape)."""
    p, q = p.clamp(0, 1), q.clamp(0, 1)
    return js_discrete(torch.stack([p, 1 - p], -1), torch.stack([q, 1 - q], -1)).mean()


def js_histogram(generated: torch.Tensor, real: torch.Tensor, bins: int = 30) -> torch.Tensor:
    """JS between the distributions of two 1-D samples, by histograms on shared bins."""
    generated, real = generated.detach().flatten().double().cpu(), real.detach().flatten().double().cpu()
    lo, hi = torch.quantile(real, 0.005).item(), torch.quantile(real, 0.995).item()
    if not hi > lo:
        raise ValueError("the real sample has no spread to put bins on")

    def hist(x: torch.Tensor) -> torch.Tensor:
        counts = torch.histc(x.clamp(lo, hi), bins=bins, min=lo, max=hi)
        return counts / counts.sum()

    return js_discrete(hist(generated), hist(real))
