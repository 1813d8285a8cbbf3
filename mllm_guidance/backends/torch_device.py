"""Where in-process models run: one rule for every torch backend (MLLM and generators)."""

from __future__ import annotations

import glob
import importlib.util
import os
import sys
from typing import Any

from mllm_guidance.errors import BackendError


def cuda_available() -> bool:
    """Whether torch would find a CUDA (or ROCm) GPU, without importing torch where there is none.

    ``import torch`` costs seconds and about 190 MiB; a default picked on a CPU-only machine should
    not pay it. With no GPU device node (``/dev/nvidia*``, ``/dev/kfd``) torch cannot see one; where
    a node exists, torch is asked (a GPU machine imports torch to render anyway)."""
    if "torch" not in sys.modules:
        if importlib.util.find_spec("torch") is None:
            return False
        if sys.platform.startswith("linux") and not (glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd")):
            return False
        if sys.platform == "darwin":
            return False  # no CUDA build of torch for macOS
    import torch

    return bool(torch.cuda.is_available())


def pick_device(device: str | None = None, dtype: str | None = None) -> tuple[str, str]:
    """(device, dtype name): CUDA with bf16 where supported (else fp16), Apple MPS with fp16,
    else CPU with fp32; explicit choices win."""
    import torch

    if device is None:
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if dtype is None:
        if device.startswith("cuda"):
            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        elif device == "mps":
            dtype = "float16"
        else:
            dtype = "float32"
    if not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise BackendError(f"unknown dtype {dtype!r}; use float32, float16 or bfloat16")
    return device, dtype


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def seeded_generator(seed: int) -> Any:
    """A CPU ``torch.Generator`` for the request's seed: the same noise on every device."""
    import torch

    return torch.Generator(device="cpu").manual_seed(int(seed))
