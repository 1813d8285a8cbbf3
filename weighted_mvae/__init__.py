"""Multimodal VAEs with modality weighting (thesis chapter 3; Yeğin & Amasyalı, ASYU 2022).

Independent of ``mllm_guidance`` (neither imports the other); needs the ``mvae`` extra (torch, numpy,
scipy). Importing this package is light: the torch-using names load on first use.

    from weighted_mvae import build_model, make_weighting, train, Settings
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Experts": "weighted_mvae.experts", "poe": "weighted_mvae.experts", "gpoe": "weighted_mvae.experts",
    "moe": "weighted_mvae.experts", "gmoe": "weighted_mvae.experts",
    "Modality": "weighted_mvae.model", "MultimodalVAE": "weighted_mvae.model", "build_model": "weighted_mvae.model",
    "make_weighting": "weighted_mvae.weighting", "Settings": "weighted_mvae.train", "train": "weighted_mvae.train",
    "default_settings": "weighted_mvae.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'weighted_mvae' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
