"""The chapter's test measures.

Image + label sets: six binary cross-entropies on the held-out test set, generating from the
posterior *mean* of the joint (J), the image alone (I) or the text alone (T) posterior, decoding the
image (2I) or the text (2T). Reductions: an image's BCE is the *mean over its 784 pixels* (pixels in
[0, 1], not binarised), a text's is the *sum over the 10 entries* of its one-hot vector (one BCE per
vector); both are then averaged over the test rows. Why those: see docs/mvae.md (the per-pixel
image errors land on the thesis's 0.19-0.22; a per-vector sum puts the label errors on the thesis's
scale only when the label path is weak, a mean over entries would be 10x smaller).

Synthetic set: each modality is generated from each single modality (z sampled from the unimodal
posterior, then the decoder's *mean*: the reconstruction a decoder outputs, without its own noise),
and out_j is the mean over the three sources of the histogram JS between generated and real x_j
(``divergence.js_histogram``); ``total`` = out1 + out2 + out3. With decoder samples instead, the
estimates of a trained model sit near 0.01-0.2, far under the thesis's 0.15-0.65; with the decoder
mean they sit on the thesis's scale, so we take it to be what the thesis measured.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from weighted_mvae.divergence import js_histogram

IMAGE_METRICS = ("J2I", "J2T", "I2I", "I2T", "T2I", "T2T")
GAUSSIAN_METRICS = ("out1", "out2", "out3", "total")


@torch.no_grad()
def image_label_errors(model, test: Mapping[str, torch.Tensor], batch_size: int = 1000) -> dict[str, float]:
    """J2I, J2T, I2I, I2T, T2I, T2T on ``test`` (``image`` and ``text`` tensors)."""
    model.eval()
    sources = {"J": ["image", "text"], "I": ["image"], "T": ["text"]}
    sums = {m: 0.0 for m in IMAGE_METRICS}
    n = len(test["image"])
    for start in range(0, n, batch_size):
        batch = {k: v[start:start + batch_size] for k, v in test.items()}
        for letter, observed in sources.items():
            mu, _ = model.posterior(batch, observed)
            image_logits, text_logits = model.decode(mu, "image"), model.decode(mu, "text")
            sums[f"{letter}2I"] += float(F.binary_cross_entropy_with_logits(image_logits, batch["image"], reduction="none").mean(1).sum())
            sums[f"{letter}2T"] += float(F.binary_cross_entropy_with_logits(text_logits, batch["text"], reduction="none").sum(1).sum())
    return {m: sums[m] / n for m in IMAGE_METRICS}


@torch.no_grad()
def gaussian_divergences(model, test: Mapping[str, torch.Tensor], seed: int = 0) -> dict[str, float]:
    """out1, out2, out3 (mean JS over the three sources) and their total."""
    model.eval()
    g = torch.Generator(device=test["m1"].device).manual_seed(seed)
    names = model.names
    cols = {}
    for j, target in enumerate(names):
        values = []
        for source in names:
            mu, logvar = model.posterior(test, [source])
            z = mu + torch.randn(mu.shape, generator=g, device=mu.device) * (0.5 * logvar).exp()
            values.append(float(js_histogram(model.mean_output(z, target), test[target])))
        cols[f"out{j + 1}"] = sum(values) / len(values)
    cols["total"] = cols["out1"] + cols["out2"] + cols["out3"]
    return cols
