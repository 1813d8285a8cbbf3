"""Running a research repository's own inference code in a worker process that owns its directory.

InstanceDiffusion and Rich-context L2I ship as repositories, not packages: their modules are
imported from the checkout, some files are read by paths relative to it (InstanceDiffusion's sampler
loads ``pretrained/SD_v1_5_input_conv_weight_bias.pth`` at every late step), and their entry points
keep settings in module globals. Changing this process's working directory during a call would move
the relative paths of every other thread (the benchmark runner writes run files while a generator
call is in flight), and ``sys.path``, ``sys.modules`` and module globals are process-wide too.

So each adapter runs their code in a worker process started in the checkout. Only the worker puts
the checkout on ``sys.path`` (once, when it loads), has it as working directory, and holds their
module globals and any stand-in module an adapter provides. This process checks the checkout and the
device, sends plain requests through a pipe and gets PNG bytes back; a call touches no global state
here. Errors come back as one line naming what to install, download or pass.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import site
import struct
import subprocess
import sys
import threading
import traceback
import weakref
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

from mllm_guidance.errors import BackendError

log = logging.getLogger(__name__)
_HEADER = struct.Struct(">Q")


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

    def file(self, path: str | os.PathLike[str], kind: str = "checkpoint", fix: str | None = None) -> str:
        """The absolute path of a file or folder of the checkout (relative paths are the checkout's)."""
        given = Path(path).expanduser()
        full = given if given.is_absolute() else self.root / given
        if not full.exists():
            raise BackendError(f"{self.what}: {kind} {full} is missing ({fix or self.setup})")
        return str(full)


def research_device(device: str | None, what: str, needs: str) -> str:
    """The device to run on: the one given, else CUDA; their code is written for CUDA, so without a
    GPU the adapter fails at load rather than on the first image."""
    if device:
        return device
    try:
        import torch
    except ImportError:
        raise BackendError(f"{what} needs torch with CUDA (pip install 'mllm-guidance[local]' on a GPU machine)") from None
    if torch.cuda.is_available():
        return "cuda"
    raise BackendError(f"{what} needs a CUDA GPU ({needs}) and torch sees none; run it on a GPU machine, "
                       f"or pass device='cpu' (--generator-device cpu) to try anyway")


class ResearchWorker:
    """A worker process running ``driver`` (``module:Class``, built with ``options``) in the checkout.

    The driver class is imported and built inside the worker, where its ``__init__`` loads their
    code and weights; ``call(method, **kwargs)`` runs one of its methods there. Calls from several
    threads are served one at a time. The worker ends with ``close()``, when this object is
    collected, at exit, or when this process dies (its end of the pipe closes). POSIX only (the
    reply pipe is passed with ``pass_fds``), as is the CUDA code it serves.
    """

    def __init__(self, code: ResearchCode, driver: str, options: dict[str, Any], python: str | None = None) -> None:
        self.what = code.what
        self._lock = threading.Lock()
        # replies come through a pipe of their own: whatever their code prints (to stdout, which goes
        # to this process's stderr) can never be taken for a reply
        interpreter = sys.executable if python is None else _interpreter(python, code.what)
        reply_read, reply_write = os.pipe()
        command = [interpreter, "-P", "-m", "mllm_guidance.backends.research_code", str(reply_write)]
        try:
            self._process = subprocess.Popen(command, cwd=code.root, env=_worker_env(foreign=python is not None),
                                             stdin=subprocess.PIPE, stdout=2, pass_fds=(reply_write,),
                                             start_new_session=True)
        except BaseException:
            os.close(reply_read)
            raise
        finally:
            os.close(reply_write)
        self._replies = os.fdopen(reply_read, "rb")
        self._finalizer = weakref.finalize(self, _shut_down, self._process, self._replies)
        try:
            self._request(("load", driver, options))
        except BaseException:
            self.close()
            raise

    def call(self, method: str, **kwargs: Any) -> Any:
        return self._request(("call", method, kwargs))

    @property
    def pid(self) -> int:
        return self._process.pid

    def close(self) -> None:
        self._finalizer()

    def _request(self, message: tuple[Any, ...]) -> Any:
        with self._lock:
            process = self._process
            if process.poll() is not None:
                raise BackendError(f"{self.what}: its worker process has ended (exit code {process.returncode}); "
                                   "its output above says why")
            try:
                _send(process.stdin, message)
                reply = _receive(self._replies)
            except (EOFError, BrokenPipeError, OSError):
                code = process.wait()
                raise BackendError(f"{self.what}: its worker process ended (exit code {code}) while serving "
                                   f"{message[0]} {message[1]!s}; its output above says why") from None
            except BaseException:  # interrupted mid-call: its reply would answer the next call, so end it
                process.kill()
                process.wait()
                raise
        if reply[0] == "ok":
            return reply[1]
        _, kind, text, trace = reply
        log.debug("%s worker traceback:\n%s", self.what, trace)
        if kind == "backend":
            raise BackendError(text)
        raise BackendError(f"{self.what}: their code raised {text}")


def _interpreter(python: str, what: str) -> str:
    """The Python of the user's own environment for their code (their pinned requirements)."""
    path = Path(python).expanduser()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise BackendError(f"{what}: the worker's python {path} is not an executable file; give the python of the "
                           "environment their requirements.txt was installed into (e.g. ~/miniconda3/envs/X/bin/python)")
    return str(path)


def _worker_env(foreign: bool = False) -> dict[str, str]:
    """This environment, plus where this package can be imported from: its folder when it is not
    installed, and for another environment's Python (``foreign``) a folder holding only a link to
    this package, so none of this environment's other packages shadow theirs."""
    env = dict(os.environ)
    package = Path(__file__).resolve().parents[1]
    here = str(package.parent)
    installed = {str(Path(p).resolve()) for p in site.getsitepackages() + [site.getusersitepackages()]}
    if foreign:
        here = _package_link(package)
    elif here in installed:
        return env
    env["PYTHONPATH"] = os.pathsep.join([here, *filter(None, [env.get("PYTHONPATH")])])
    return env


def _package_link(package: Path) -> str:
    """A folder (per process) whose only entry links to this package."""
    import tempfile

    folder = Path(tempfile.gettempdir()) / f"mllm-guidance-worker-path-{os.getuid()}-{os.getpid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    link = folder / package.name
    if not link.is_symlink():
        link.symlink_to(package, target_is_directory=True)
    return str(folder)


def _shut_down(process: subprocess.Popen[bytes], replies: BinaryIO) -> None:
    try:
        if process.poll() is None:
            process.stdin.close()  # the worker exits when its input ends
            process.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait()
    finally:
        replies.close()


def _send(stream: BinaryIO, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    size = _HEADER.unpack(header)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


# ---- inside the worker --------------------------------------------------------------------------


def use_checkout(root: str) -> None:
    """Make the checkout importable (in the worker only, once, at load)."""
    if root not in sys.path:
        sys.path.insert(0, root)


def import_research_module(name: str, what: str, setup: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise BackendError(f"{what}: cannot import {name!r} from {os.getcwd()} ({exc}); install the repository's "
                           f"requirements ({setup})") from None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def serve(channel_in: BinaryIO, channel_out: BinaryIO) -> None:
    """The worker's loop: build the driver, then answer calls until the input ends."""
    driver = None
    while True:
        try:
            message = _receive(channel_in)
        except EOFError:
            return
        try:
            if message[0] == "load":
                module, _, attr = message[1].partition(":")
                driver = getattr(importlib.import_module(module), attr)(**message[2])
                reply: tuple[Any, ...] = ("ok", None)
            else:
                reply = ("ok", getattr(driver, message[1])(**message[2]))
        except Exception as exc:
            kind = "backend" if isinstance(exc, BackendError) else "raised"
            reply = ("error", kind, str(exc) if kind == "backend" else one_line(exc), traceback.format_exc())
        _send(channel_out, reply)


if __name__ == "__main__":
    from mllm_guidance.backends import research_code

    research_code.serve(sys.stdin.buffer, os.fdopen(int(sys.argv[1]), "wb"))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # the input ended: skip tearing down their modules (seconds with torch and CUDA loaded)
