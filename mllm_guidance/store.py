"""The run directory: images as PNG files, the MLLM call log, run metadata and checkpoints.

Layout of a run directory::

    meta.json          what the run was asked to do (prompt, config, models, versions, thread id)
    calls.jsonl        every MLLM call as it happened: request text, raw reply, parse result
    round-K.png        the image of round K; round-K-overlay.png the same with its boxes drawn
    final.png          the best image
    checkpoints.sqlite LangGraph checkpoints (when enabled): resume after a crash
    run.json           the finished run in one file; report.html its visual view

Every write is atomic (temporary file + rename), so a crash never leaves half a file, and every
JSON write passes through ``redact``, so keys never land on disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from mllm_guidance.errors import InputError
from mllm_guidance.redact import redact
from mllm_guidance.state import ImageRef

CALLS_FILE = "calls.jsonl"
META_FILE = "meta.json"
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoints.sqlite"


class RunStore:
    """One run directory; safe to share between the nodes of a run (appends are locked)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        return self.root / name

    # -- images -------------------------------------------------------------------------------

    def save_image(self, image: Any, name: str) -> ImageRef:
        """Write a PIL image as PNG and return its reference."""
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        data = buf.getvalue()
        self.write_bytes(name, data)
        return ImageRef(
            path=name,
            sha256=hashlib.sha256(data).hexdigest(),
            width=image.width,
            height=image.height,
            bytes=len(data),
        )

    def load_image(self, ref: ImageRef) -> Any:
        """The PIL image behind a reference; refuses a file that is missing or was changed."""
        from PIL import Image

        path = self.path(ref.path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"image {path} is missing from the run directory") from None
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise InputError(f"image {path} was changed after the run wrote it (hash differs)")
        image = Image.open(io.BytesIO(data))
        image.load()
        return image

    # -- files --------------------------------------------------------------------------------

    def write_bytes(self, name: str, data: bytes) -> Path:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; run files are meant to be shared
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def write_json(self, name: str, data: Any) -> Path:
        text = json.dumps(redact(data), indent=2, ensure_ascii=False, default=str)
        return self.write_bytes(name, (text + "\n").encode("utf-8"))

    def read_json(self, name: str) -> Any:
        path = self.path(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path} does not exist; is {self.root} a run directory?") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is not valid JSON ({exc})") from None

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode("utf-8"))

    # -- the call log -------------------------------------------------------------------------

    def record_call(self, record: dict[str, Any]) -> str:
        """Append one MLLM call to the log and return its id."""
        call_id = record.get("id") or uuid.uuid4().hex[:12]
        line = json.dumps(redact({**record, "id": call_id}), ensure_ascii=False, default=str)
        with self._lock, open(self.path(CALLS_FILE), "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
        return call_id

    def calls(self) -> list[dict[str, Any]]:
        """Every logged call, including calls of steps that crashed before they finished.

        A line cut short by a crash is skipped rather than failing the whole read.
        """
        path = self.path(CALLS_FILE)
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out
