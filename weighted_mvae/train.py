"""Training one model: the settings we chose where the thesis is silent, the loop, one run's errors.

The thesis gives the data sizes (1,000 training images; 10,000 / 1,000 synthetic samples), the
synthetic nets and latent size, nothing else. Our choices (``Settings``): Adam, beta = 1 without
annealing; MNIST / Fashion-MNIST: learning rate 1e-3, batches of 100, 30 epochs (1,000 images: 300
steps), the text reconstruction scaled by lambda = 50 as in Wu & Goodman's MVAE (without it the
784 pixel terms drown the 10 label terms and the latent ignores the text); synthetic: learning rate
1e-3, batches of 500, 20 epochs (10,000 samples: 400 steps), scales 1 (longer training moves the JS
estimates far under the thesis's, see docs/mvae.md). The automatic weightings
update after every epoch but the last from a probe of 500 training rows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from weighted_mvae import nets
from weighted_mvae.model import Modality, MultimodalVAE
from weighted_mvae.weighting import Weighting, make_weighting


@dataclass(frozen=True)
class Settings:
    """Everything one training run depends on besides the data, the rule, the weighting and the seed."""

    epochs: int = 30
    batch_size: int = 100
    lr: float = 1e-3
    latent: int = 20
    image_hidden: tuple[int, ...] = (512,)
    text_hidden: tuple[int, ...] = (64,)
    text_scale: float = 50.0
    train_size: int = 1000
    test_size: int = 2000
    probe_size: int = 500

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_settings(dataset: str, **overrides: Any) -> Settings:
    """The settings used for the tables: the same for MNIST and Fashion-MNIST (the held-out check)."""
    if dataset == "gaussian":
        base = Settings(epochs=20, batch_size=500, lr=1e-3, latent=1, text_scale=1.0, train_size=10_000, test_size=1_000)
    else:
        base = Settings()
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def make_model(dataset: str, expert: str, settings: Settings) -> MultimodalVAE:
    """The chapter's model for a dataset; ``expert`` is the family (poe / moe) or a rule name."""
    rule = {"poe": "gpoe", "moe": "gmoe"}.get(expert, expert)
    if dataset == "gaussian":
        mods = [Modality(f"m{i}", *nets.scalar_nets(settings.latent), likelihood="gaussian") for i in (1, 2, 3)]
    else:
        mods = [Modality("image", *nets.image_nets(settings.latent, settings.image_hidden)),
                Modality("text", *nets.label_nets(settings.latent, settings.text_hidden), scale=settings.text_scale)]
    return MultimodalVAE(mods, rule)


def train(model: MultimodalVAE, data: Mapping[str, torch.Tensor], weighting: Weighting, settings: Settings, *,
          seed: int = 0, device: str | torch.device = "cpu",
          progress: Callable[[int, float, list[float]], None] | None = None) -> dict[str, Any]:
    """Train ``model`` on ``data`` (modality -> tensor, rows aligned); returns the loss and weight history."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model.to(device).train()
    data = {k: v.to(device) for k, v in data.items()}
    n = len(next(iter(data.values())))
    model.set_weights(weighting.initial(model.names))
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.lr)
    g = torch.Generator().manual_seed(seed)
    probe_idx = torch.randperm(n, generator=g)[: settings.probe_size].to(device)
    losses, weights = [], [model.weights.tolist()]
    for epoch in range(settings.epochs):
        order = torch.randperm(n, generator=g).to(device)
        total = 0.0
        for start in range(0, n, settings.batch_size):
            idx = order[start:start + settings.batch_size]
            loss = model.loss({k: v[idx] for k, v in data.items()}, rng)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
        if weighting.auto and epoch < settings.epochs - 1:
            model.eval()
            new = weighting.update(model, {k: v[probe_idx] for k, v in data.items()})
            model.train()
            if new is not None:
                model.set_weights(new)
        weights.append(model.weights.tolist())
        if progress:
            progress(epoch + 1, losses[-1], model.weights.tolist())
    model.eval()
    return {"loss": losses, "weights": weights}


def run_once(dataset: str, expert: str, weighting_name: str, seed: int, settings: Settings, *,
             source: Any = None, device: str = "cpu",
             progress: Callable[[int, float, list[float]], None] | None = None
             ) -> tuple[MultimodalVAE, dict[str, float], dict[str, Any]]:
    """One row's run: draw the training set with ``seed``, train, evaluate on the test set.
    ``source`` is the loaded ``ImageLabels`` for the image datasets."""
    from weighted_mvae.data import gaussian_modalities, split
    from weighted_mvae.evaluate import gaussian_divergences, image_label_errors

    started = time.perf_counter()
    if dataset == "gaussian":
        train_data = gaussian_modalities(settings.train_size, seed=1000 + seed)
        test_data = gaussian_modalities(settings.test_size, seed=999_999)
    else:
        train_data, test_data = split(source, settings.train_size, settings.test_size, seed)
    torch.manual_seed(seed)  # the initial weights: one seed makes the whole run
    model = make_model(dataset, expert, settings)
    weighting = make_weighting(weighting_name, model.names)
    history = train(model, train_data, weighting, settings, seed=seed, device=device, progress=progress)
    test_data = {k: v.to(device) for k, v in test_data.items()}
    if dataset == "gaussian":
        metrics = gaussian_divergences(model, test_data, seed=seed)
    else:
        metrics = image_label_errors(model, test_data)
    history["seconds"] = time.perf_counter() - started
    return model, metrics, history
