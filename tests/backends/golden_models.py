"""The tiny seeded models the golden outputs were recorded on (``scripts/record_goldens.py``), and a
fingerprint of their weights, so a golden test can tell a changed tiny model from a drifted pipeline."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.backends.tiny_diffusion import build_tiny_gligen, build_tiny_gligen_xl
from tests.backends.tiny_dit import build_tiny_creatilayout_sd3, build_tiny_flux
from tests.backends.tiny_qwen_image import build_tiny_qwen_image

GOLDEN = Path(__file__).parent / "golden"


def tiny_flux_dev(target: Path) -> Path:
    return build_tiny_flux(target, dev=True)


def tiny_creatilayout_sd3(target: Path) -> Path:
    return build_tiny_creatilayout_sd3(target)


def tiny_gligen_xl(target: Path) -> Path:
    return build_tiny_gligen_xl(target)


def tiny_sd_gligen(target: Path) -> Path:
    return build_tiny_gligen(target)


def fingerprint_folder(folder: Path) -> str:
    """sha256 over every weight tensor of a saved pipeline (names, shapes and float32 values, in order)."""
    import torch
    from safetensors.torch import load_file

    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*.safetensors")):
        tensors = load_file(str(path))
        for name in sorted(tensors):
            digest.update(f"{path.parent.name}/{name}{tuple(tensors[name].shape)}".encode())
            digest.update(tensors[name].to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def tiny_qwen_image(target: Path) -> Path:
    """Two blocks, so entity text updated under the mask feeds the next block."""
    return build_tiny_qwen_image(target, layers=2)
