"""The run directory: images as PNG files, the MLLM call log, run metadata and checkpoints.

Layout of a run directory::

    spec.json          what the run was asked to do: the RunSpec (prompt, config, models, versions, thread id)
    calls.jsonl        every MLLM call as it happened: request text, raw reply, parse result
    round-K.png        the image of round K (round-K.webp / round-K.jpg with ``round_format``)
    final.png          the best image: a hard link to its round's PNG (a copy across file systems)
    checkpoints.sqlite LangGraph checkpoints (when enabled): resume after a crash
    run.json           the finished run in one file; report.html its visual view

Images are encoded and written by background threads while the MLLM looks at them (``start_image``).
Every write is atomic (temporary file + rename), so a crash never leaves half a file, and every
text write (JSON, the call log, report.html) passes through ``redact``, so keys never land on disk.
A write the disk refuses (full, read-only, a file where a directory should be) is one
``StorageError`` line naming the directory and the space it needs, never a traceback. Text is written so that any
string survives: MLLM replies may hold lone UTF-16 surrogates, which UTF-8 cannot encode; they
are written as ``\\udXXX`` escapes (in JSON, the escape of the same character) instead of
stopping the run.
"""

from __future__ import annotations

import asyncio
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
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllm_guidance.errors import InputError, StorageError
from mllm_guidance.images import FILE_FORMATS, ModelImage, downscale_for_model, encode_file, encode_for_model, to_rgb
from mllm_guidance.redact import redact, redact_text
from mllm_guidance.state import ImageRef

CALLS_FILE = "calls.jsonl"
SPEC_FILE = "spec.json"
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoints.sqlite"
#: The file names round images may have (``round_format``), and what they are stored as.
ROUND_IMAGE = re.compile(r"round-\d+(-overlay|-candidate-\d+)?\.(png|webp|jpg)")


def _writers() -> ThreadPoolExecutor:
    """The threads that encode and write images in the background, shared by every store of the
    process: two, since the encoders (ISA-L's deflate, Pillow's WebP and JPEG) release the GIL and
    so run beside the event loop's work."""
    global _WRITERS
    with _WRITERS_LOCK:
        if _WRITERS is None:
            _WRITERS = ThreadPoolExecutor(2, thread_name_prefix="image-writer")
        return _WRITERS


_WRITERS: ThreadPoolExecutor | None = None
_WRITERS_LOCK = threading.Lock()


def _forget_writers() -> None:
    """A forked child has none of its parent's threads: it starts its own writers when it needs them."""
    global _WRITERS, _WRITERS_LOCK
    _WRITERS, _WRITERS_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_writers)


@dataclass
class _Kept:
    """An image this store holds decoded: until its file is written (``pending``), then while the
    file is still the one written (``stamp``: size, mtime)."""

    image: Any
    pending: Future[ImageRef] | None = None
    stamp: Any = None


class RunStore:
    """One run directory; safe to share between the nodes of a run (appends are locked).

    Images leave the critical path: ``start_image`` returns at once with a reference whose hash is
    not known yet (``sha256`` None) and hands encoding and writing to a background thread; the
    nodes that read the image (reason, align) get it from memory, and ``finish_image`` waits for
    the file and completes the reference. Every image file appears whole or not at all
    (temporary name, then rename)."""

    #: Images this store keeps decoded (the newest) and encoded for the MLLM: reason and align look
    #: at the image generate just made, so neither decodes the file nor encodes it twice.
    KEEP_DECODED, KEEP_ENCODED = 2, 4

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        make_dirs(self.root)
        self._lock = threading.Lock()
        self._decoded: dict[str, _Kept] = {}  # by file name
        self._encoded: dict[tuple[str, int, str], tuple[ModelImage, _Kept]] = {}
        self._pending: dict[str, Future[ImageRef]] = {}
        self._held: tuple[str, Any] | None = None  # the best round's render (``hold``)

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
        """Write a PIL image (PNG, or by ``name``'s extension lossless WebP or JPEG) and return
        its complete reference. Any mode is converted (transparency onto white); an empty image or
        a non-image is a ``BackendError``."""
        return self.finish_image(self.start_image(image, name))

    def start_image(self, image: Any, name: str) -> ImageRef:
        """Like ``save_image``, but the file is encoded and written in the background: the
        reference returned at once has ``sha256`` and ``bytes`` None until ``finish_image``."""
        image = to_rgb(image)
        suffix = Path(name).suffix.lower()
        if suffix not in FILE_FORMATS:
            raise InputError(f"{name!r}: images are stored as {', '.join(FILE_FORMATS)}")
        self.path(name)  # refused before anything is queued
        ref = ImageRef(path=name, sha256=None, width=image.width, height=image.height, bytes=None)
        kept = _Kept(image)
        with self._lock:
            earlier = self._pending.get(name)
        if earlier is not None:  # the same name again (a step run twice): its files land in order
            wait([earlier])  # its failure, if any, is for its own reader to see
        with self._lock:
            kept.pending = self._pending[name] = _writers().submit(self._write_image, image, ref, kept)
        _remember(self._decoded, name, kept, self.KEEP_DECODED, self._lock)
        return ref

    def _write_image(self, image: Any, ref: ImageRef, kept: _Kept) -> ImageRef:
        data = encode_file(image, Path(ref.path).suffix.lower())
        self.write_bytes(ref.path, data)
        kept.stamp = self._stamp(ref.path)
        return ref.model_copy(update={"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})

    def finish_image(self, ref: ImageRef) -> ImageRef:
        """``ref`` complete: waits for its file when this store is writing it; a reference whose
        writer is gone (a resumed run) is completed from the file as found."""
        if ref.sha256 is not None:
            return ref
        with self._lock:
            pending = self._pending.get(ref.path)
        if pending is not None:
            done = pending.result()
            with self._lock:
                if self._pending.get(ref.path) is pending:
                    del self._pending[ref.path]
            return done
        data = self.image_bytes(ref)
        return ref.model_copy(update={"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})

    async def finished(self, ref: ImageRef) -> ImageRef:
        """``finish_image`` without blocking the event loop."""
        if ref.sha256 is not None:
            return ref
        return await asyncio.to_thread(self.finish_image, ref)

    async def flush(self) -> None:
        """Wait until every image started so far is on disk (a checkpoint that names an image is
        stored only after its file: a resumed run never looks for a file that was never written)."""
        with self._lock:
            pending = list(self._pending.values())
        for future in pending:
            await asyncio.wrap_future(future)

    def hold(self, ref: ImageRef) -> None:
        """Keep ``ref``'s render in memory until another is held: the best round so far, whose
        PNG ``final_image`` makes from the render itself when rounds are stored as JPEG."""
        kept = self._kept(ref.path)
        if kept is not None:
            self._held = (ref.path, kept.image)

    def _stamp(self, name: str) -> Any:
        """What says the file ``name`` is still the one this store wrote (size, mtime)."""
        try:
            st = self.path(name).stat()
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns)

    def _valid(self, kept: _Kept, name: str) -> bool:
        if kept.pending is not None and not kept.pending.done():
            return True
        return kept.stamp is not None and kept.stamp == self._stamp(name)

    def _kept(self, name: str) -> _Kept | None:
        with self._lock:
            kept = self._decoded.get(name)
        return kept if kept is not None and self._valid(kept, name) else None

    def link_image(self, ref: ImageRef, name: str) -> ImageRef:
        """The same file under another name: a hard link (a copy only where links cannot be made,
        e.g. across file systems), written when ``ref``'s own file is."""
        ref = self.finish_image(ref)
        link_or_copy(self.path(ref.path), self.path(name))
        with self._lock:
            kept = self._decoded.get(ref.path)
        if kept is not None and self._valid(kept, ref.path):
            _remember(self._decoded, name, _Kept(kept.image, stamp=self._stamp(name)), self.KEEP_DECODED, self._lock)
        return ref.model_copy(update={"path": name})

    def final_image(self, ref: ImageRef, name: str = "final.png") -> ImageRef:
        """The output image as PNG: a link to the round's PNG; a round stored as WebP or JPEG is
        encoded as PNG, from the render itself when this store still holds it (``hold``)."""
        ref = self.finish_image(ref)
        if Path(ref.path).suffix.lower() == ".png":
            return self.link_image(ref, name)
        held = self._held[1] if self._held is not None and self._held[0] == ref.path else None
        return self.save_image(held if held is not None else self.load_image(ref), name)

    def image_bytes(self, ref: ImageRef) -> bytes:
        """The file bytes behind a reference (its file written first when this store is writing
        it); refuses a file that is missing or was changed."""
        if ref.sha256 is None:
            with self._lock:
                pending = self._pending.get(ref.path)
            if pending is not None:
                ref = pending.result()
        path = self.path(ref.path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"image {path} is missing from the run directory") from None
        if ref.sha256 is not None and hashlib.sha256(data).hexdigest() != ref.sha256:
            raise InputError(f"image {path} was changed after the run wrote it (hash differs)")
        return data

    def load_image(self, ref: ImageRef) -> Any:
        """The PIL image behind a reference (checked as ``image_bytes`` checks it; an image this
        store made moments ago, whose file is untouched since, is returned from memory)."""
        from PIL import Image

        kept = self._kept(ref.path)
        if kept is not None:
            return kept.image.copy()
        image = Image.open(io.BytesIO(self.image_bytes(ref)))
        image.load()
        return to_rgb(image)

    def image_for_model(self, ref: ImageRef, max_side: int, image_format: str = "jpeg") -> ModelImage:
        """The image as the MLLM gets it: downscaled so that its longest side is at most
        ``max_side`` (``images.downscale_for_model``), as JPEG (or PNG). Encoded once per image
        and setting, from memory when this store made the image: reason and align send the same
        picture, and neither waits for the file."""
        key = (ref.path, max_side, image_format)
        with self._lock:
            cached = self._encoded.get(key)
        if cached is not None and self._valid(cached[1], ref.path):
            return cached[0]
        kept = self._kept(ref.path)
        if kept is None:
            kept = _Kept(self.load_image(ref), stamp=self._stamp(ref.path))
        sent = encode_for_model(downscale_for_model(kept.image, max_side), image_format)
        _remember(self._encoded, key, (sent, kept), self.KEEP_ENCODED, self._lock)
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
        for image in self.root.glob("round-*"):
            if image.is_file() and ROUND_IMAGE.fullmatch(image.name):
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


def link_or_copy(source: Path, target: Path) -> Path:
    """``target`` as a hard link to ``source`` (replacing what was there, atomically); a copy where
    the file system refuses links (another file system, or one without links)."""
    make_dirs(target.parent)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        os.link(source, tmp)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EOPNOTSUPP):
            raise storage_error(exc, target, None) from None
        try:
            data = source.read_bytes()
        except OSError as read_exc:
            raise InputError(f"cannot read {source}: {read_exc.strerror or read_exc}") from None
        return write_atomic(target, data)
    try:
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise storage_error(exc, target, None) from None
    return target


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
