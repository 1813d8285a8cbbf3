"""Running a research repository's own inference code in this process.

InstanceDiffusion and Rich-context L2I ship as repositories, not packages, and their code reads
configs and checkpoints by paths relative to the checkout. ``ResearchCode`` puts the checkout on
``sys.path``, runs their calls from inside it, and turns a missing checkout, module or checkpoint
into one line naming what to install or download.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from mllm_guidance.errors import BackendError


class ResearchCode:
    """A checkout of a research repository, given by path or by an environment variable."""

    def __init__(self, what: str, repo: str | None, env_var: str, url: str, setup: str) -> None:
        self.what, self.url, self.setup = what, url, setup
        path = repo or os.environ.get(env_var)
        if not path:
            raise BackendError(f"{what} needs its official code: git clone {url} and pass repo=PATH or set {env_var} ({setup})")
        self.root = Path(path).expanduser().resolve()
        if not self.root.is_dir():
            raise BackendError(f"{what}: {self.root} is not a checkout of {url} (set {env_var} to the clone; {setup})")

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Run with the checkout importable and as the working directory (their paths are relative)."""
        previous = os.getcwd()
        added = str(self.root) not in sys.path
        if added:
            sys.path.insert(0, str(self.root))
        os.chdir(self.root)
        try:
            yield
        finally:
            os.chdir(previous)

    def module(self, name: str) -> ModuleType:
        with self.inside():
            try:
                return importlib.import_module(name)
            except ImportError as exc:
                raise BackendError(
                    f"{self.what}: cannot import {name!r} from {self.root} ({exc}); install the repository's "
                    f"requirements ({self.setup})"
                ) from None

    def checkpoint(self, path: str) -> str:
        full = (self.root / path) if not Path(path).is_absolute() else Path(path)
        if not full.exists():
            raise BackendError(f"{self.what}: checkpoint {full} is missing ({self.setup})")
        return str(full)
