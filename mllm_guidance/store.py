"""The run directory: images as PNG files, the MLLM call log, run metadata and checkpoints.

Layout of a run directory::

    spec.json          what the run was asked to do: the RunSpec (prompt, config, models, versions, thread id)
    calls.jsonl        every MLLM call as it happened: request text, raw reply, parse result
    round-K.png        the image of round K
    final.png          the best image
    checkpoints.sqlite LangGraph checkpoints (when enabled): resume after a crash
    run.json           the finished run in one file; report.html its visual view

Every write is atomic (temporary file + rename), so a crash never leaves half a file, and every
text write (JSON, the call log, report.html) passes through ``redact``, so keys never land on disk.
A write the disk refuses (full, read-only, a file where a directory should be) is one
``StorageError`` line naming the directory and the space it needs, never a traceback. Text is written so that any
string survives: MLLM replies may hold lone UTF-16 surrogates, which UTF-8 cannot encode; they
are written as ``\\udXXX`` escapes (in JSON, the escape of the same character) instead of
stopping the run.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

from mllm_guidance.errors import InputError, StorageError
from mllm_guidance.images import ModelImage, encode_for_model, to_rgb
from mllm_guidance.redact import redact, redact_text
from mllm_guidance.state import ImageRef

CALLS_FILE = "calls.jsonl"
SPEC_FILE = "spec.json"
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoints.sqlite"
#: zlib level for PNG files: level 1 encodes a 1024x1024 image about 5x faster than the default 6
#: (60 ms instead of 290 ms on noise) for files at most a few percent larger on photographs.
PNG_COMPRESS_LEVEL = 1


def png_bytes(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


class RunStore:
    """One run directory; safe to share between the nodes of a run (appends are locked)."""

    #: Images this store keeps decoded (the newest) and encoded for the MLLM: reason and align look
    #: at the image generate just wrote, so neither decodes the PNG again nor encodes it twice.
    KEEP_DECODED, KEEP_ENCODED = 2, 4

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        make_dirs(self.root)
        self._lock = threading.Lock()
        self._decoded: dict[str, tuple[Any, Any]] = {}  # sha -> (image, the file's stamp when written)
        self._encoded: dict[tuple[str, int, str], tuple[ModelImage, Any]] = {}

    def path(self, name: str) -> Path:
        """A file of this run directory; a name that would lead outside it (absolute, ``..``, a
        link out) is refused: image references in state name files of this run only."""
        target = self.root / name
        resolved = target.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise InputError(f"{name!r} is not a file of the run directory {self.root}")
        return target

    # -- images -------------------------------------------------------------------------------

    def save_image(self, image: Any, name: str) -> ImageRef:
        """Write a PIL image as an RGB PNG and return its reference. Any mode is converted
        (transparency onto white); an empty image or a non-image is a ``BackendError``."""
        image = to_rgb(image)
        data = png_bytes(image)
        self.write_bytes(name, data)
        ref = ImageRef(
            path=name,
            sha256=hashlib.sha256(data).hexdigest(),
            width=image.width,
            height=image.height,
            bytes=len(data),
        )
        _remember(self._decoded, ref.sha256, (image, self._stamp(ref)), self.KEEP_DECODED, self._lock)
        return ref

    def _stamp(self, ref: ImageRef) -> Any:
        """What says the file behind ``ref`` is still the one this store wrote (size, mtime)."""
        try:
            st = self.path(ref.path).stat()
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns)

    def copy_image(self, ref: ImageRef, name: str) -> ImageRef:
        """The same image under another name, without decoding it."""
        self.write_bytes(name, self.image_bytes(ref))
        return ref.model_copy(update={"path": name})

    def image_bytes(self, ref: ImageRef) -> bytes:
        """The PNG bytes behind a reference; refuses a file that is missing or was changed."""
        path = self.path(ref.path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"image {path} is missing from the run directory") from None
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise InputError(f"image {path} was changed after the run wrote it (hash differs)")
        return data

    def load_image(self, ref: ImageRef) -> Any:
        """The PIL image behind a reference (checked as ``image_bytes`` checks it; an image this
        store wrote moments ago, whose file is untouched since, is returned as it was written)."""
        from PIL import Image

        with self._lock:
            kept = self._decoded.get(ref.sha256)
        if kept is not None and kept[1] is not None and kept[1] == self._stamp(ref):
            return kept[0].copy()
        image = Image.open(io.BytesIO(self.image_bytes(ref)))
        image.load()
        return image

    def image_for_model(self, ref: ImageRef, max_side: int, image_format: str = "jpeg") -> ModelImage:
        """The image as the MLLM gets it: downscaled so that its longest side is at most
        ``max_side``, as JPEG (or PNG: the stored file itself when it is small enough). Encoded
        once per image and setting: reason and align send the same picture."""
        key = (ref.sha256, max_side, image_format)
        with self._lock:
            kept = self._encoded.get(key)
        if kept is not None and kept[1] is not None and kept[1] == self._stamp(ref):
            return kept[0]
        if image_format == "png" and max(ref.width, ref.height) <= max_side:
            sent = ModelImage(self.image_bytes(ref), "image/png")
        else:
            image = self.load_image(ref)
            if max(image.size) > max_side:
                scale = max_side / max(image.size)
                image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
            sent = encode_for_model(image, image_format)
        _remember(self._encoded, key, (sent, self._stamp(ref)), self.KEEP_ENCODED, self._lock)
        return sent

    # -- files --------------------------------------------------------------------------------

    def write_bytes(self, name: str, data: bytes) -> Path:
        return write_atomic(self.path(name), data)

    def write_json(self, name: str, data: Any) -> Path:
        text = json.dumps(redact(data), indent=2, ensure_ascii=False, default=str)
        return self.write_bytes(name, _utf8(text + "\n"))

    def read_json(self, name: str) -> Any:
        path = self.path(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path} does not exist; is {self.root} a run directory?") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path} is not valid UTF-8 JSON ({exc})") from None
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None

    def write_text(self, name: str, text: str) -> Path:
        """Text (a report, a results file) with its secrets masked."""
        return self.write_bytes(name, _utf8(redact_text(text)))

    # -- the call log -------------------------------------------------------------------------

    def record_call(self, record: dict[str, Any]) -> str:
        """Append one MLLM call to the log and return its id (a huge reply is stored bounded:
        ``bounded_reply``)."""
        call_id = record.get("id") or uuid.uuid4().hex[:12]
        record = {**record, **bounded_reply(record.get("reply")), "id": call_id}
        line = json.dumps(redact(record), ensure_ascii=False, default=str)
        append_line(self.path(CALLS_FILE), _utf8(line + "\n"), self._lock)
        return call_id

    def clear_attempt(self) -> None:
        """Remove what an attempt that never reached a checkpoint left (the call log, images, a
        checkpoint file without checkpoints), so the run can start again in place. Only this
        module's own file names are touched; spec.json is rewritten by the new attempt."""
        names = [CALLS_FILE, "final.png", "report.html"] + [CHECKPOINT_FILE + s for s in ("", "-wal", "-shm", "-journal")]
        for name in names:
            self.path(name).unlink(missing_ok=True)
        for image in self.root.glob("round-*.png"):
            if image.is_file() and re.fullmatch(r"round-\d+(-overlay)?\.png", image.name):
                image.unlink()

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


def _remember(cache: dict[Any, Any], key: Any, value: Any, keep: int, lock: threading.Lock) -> None:
    """Keep ``value`` under ``key``, dropping the oldest entries beyond ``keep``."""
    with lock:
        cache.pop(key, None)
        cache[key] = value
        while len(cache) > keep:
            cache.pop(next(iter(cache)))


def _utf8(text: str) -> bytes:
    """UTF-8 that never fails: a lone surrogate becomes the six characters of its escape,
    which inside a JSON string decodes back to the same character."""
    return text.encode("utf-8", errors="backslashreplace")


# -- writing files, and what a refused write says ---------------------------------------------


def make_dirs(path: Path) -> None:
    """``mkdir -p`` whose failure is one line (a file in the way, a read-only or full disk)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, path / ".", 0) from None
    if not path.is_dir():
        raise StorageError(f"{path} is not a directory; choose another output directory")


def write_atomic(target: Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` through a temporary file and a rename: a crash, a kill or a
    full disk leaves the old file or the new one, never half of one."""
    make_dirs(target.parent)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; run files are meant to be shared
        os.replace(tmp, target)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise storage_error(exc, target, len(data)) from None
        raise
    return target


#: The most characters of one MLLM reply stored (calls.jsonl, and so run.json and report.html): a
#: real answer is a few hundred characters to about 10 KB; a reasoning model's chain of thought can
#: be longer. Past this, the reply's start and end are kept (the answer of a reasoning model is at
#: the end, after ``</think>``), with its length and SHA-256.
MAX_STORED_REPLY = 65_536


def bounded_reply(reply: Any) -> dict[str, Any]:
    """``{"reply": ...}`` as stored: whole when short; else its first and last halves of
    ``MAX_STORED_REPLY`` around a marker, with ``reply_chars`` and ``reply_sha256`` of the whole."""
    if not isinstance(reply, str) or len(reply) <= MAX_STORED_REPLY:
        return {"reply": reply} if reply is not None else {}
    half = MAX_STORED_REPLY // 2
    cut = len(reply) - 2 * half
    digest = hashlib.sha256(reply.encode("utf-8", errors="surrogatepass")).hexdigest()
    return {"reply": f"{reply[:half]}\n[... {cut:,} characters not stored ...]\n{reply[-half:]}",
            "reply_chars": len(reply), "reply_sha256": digest}


def append_line(path: Path, line: bytes, lock: threading.Lock, *, durable: bool = False) -> None:
    """Append one line (``durable``: synced to the disk); a full disk leaves at most a torn last
    line, which the readers skip."""
    try:
        with lock, open(path, "ab") as f:
            f.write(line)
            f.flush()
            if durable:
                os.fsync(f.fileno())
    except OSError as exc:
        raise storage_error(exc, path, len(line)) from None


def storage_error(exc: OSError, target: Path, size: int | None) -> StorageError:
    """One line for a write the file system refused: where, why, and what to do."""
    directory = target.parent
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(directory)
        need = f"writing {target.name} needs {human_bytes(size)}" if size else f"writing {target.name} failed"
        return StorageError(
            f"no space left in {directory} ({human_bytes(free)} free; {need}): free at least that much "
            "(a run writes a few MB per round at 1024x1024) or choose another directory, then run the same command again"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(f"cannot write in {directory}: {exc.strerror}; choose a directory you can write to")
    if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        blocker = next((p for p in [target, *target.parents] if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            return StorageError(f"{blocker} is a file, not a directory; choose another output directory")
    return StorageError(f"cannot write {target}: {exc.strerror or exc}")


def free_bytes(directory: Path) -> int | None:
    for path in [directory, *directory.parents]:
        try:
            return shutil.disk_usage(path).free
        except OSError:
            continue
    return None


def human_bytes(size: int | None) -> str:
    if size is None:
        return "an unknown amount"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"
