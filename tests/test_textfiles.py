"""Files users and clients name are read bounded (issue 20, item 5): regular files only, at most
``textfiles.LIMITS`` bytes; ``/dev/zero``, a FIFO or a huge file is one line, never an unbounded read."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from mllm_guidance.errors import InputError
from mllm_guidance.textfiles import read_user_text
from tests.cli.test_bad_paths import bench, gen, one_line_error

ROOT = Path(__file__).resolve().parents[1]


def _capped_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (3 * 1024**3, 3 * 1024**3))  # an unbounded read dies here, not the machine


def test_replay_dev_zero_is_refused_at_once(tmp_path):
    """The studio case: `replay:/dev/zero` read until the kernel killed the process at 22.7 GB."""
    out = subprocess.run([sys.executable, "-m", "mllm_guidance", "generate", "a cat", "--mllm", "replay:/dev/zero",
                          "--generator", "sketch", "--quiet", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120, preexec_fn=_capped_memory, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip() == "error: recording /dev/zero is not a regular file (a device, a pipe or a socket); give a file"


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.json"
    os.mkfifo(path)
    return path


@pytest.fixture
def huge(tmp_path):
    from mllm_guidance.textfiles import LIMITS

    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(LIMITS["recording"] + 1)  # sparse: no disk used
    return path


def test_every_user_file_kind_refuses_fifos_devices_and_oversized_files(tmp_path, fifo, huge, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    cases = {
        "replay fifo": gen("--mllm", f"replay:{fifo}", "--out", str(tmp_path / "a")),
        "replay huge": gen("--mllm", f"replay:{huge}", "--out", str(tmp_path / "b")),
        "dataset /dev/zero": bench("/dev/zero", tmp_path / "c"),
        "dataset fifo": bench(str(fifo), tmp_path / "d"),
        "dataset huge": bench(str(huge), tmp_path / "e"),
        "prices /dev/zero": gen("--prices", "/dev/zero", "--out", str(tmp_path / "f")),
    }
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    os.symlink("/dev/zero", tpl / "place.txt")
    cases["template linked to /dev/zero"] = gen("--templates", str(tpl), "--out", str(tmp_path / "g"))
    for name, args in cases.items():
        err = one_line_error(capsys, args)
        assert "not a regular file" in err or "the most read is" in err, (name, err)


def test_the_limit_is_stated_and_kept(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("x" * 100)
    assert read_user_text(path, "template", limit=100) == "x" * 100
    with pytest.raises(InputError, match=r"is 100 bytes; the most read is 99"):
        read_user_text(path, "template", limit=99)
    with pytest.raises(InputError, match="is a directory"):
        read_user_text(tmp_path, "dataset")
    with pytest.raises(InputError, match="not a usable path"):
        read_user_text(Path("a\0b"), "dataset")


def test_hostile_dataset_files_are_one_line_with_file_and_line(tmp_path, capsys):
    """Issue 20, item 9: each was a traceback (RecursionError, the int digit limit, csv's field limit)."""
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"prompt": "a cat"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    digits = tmp_path / "digits.jsonl"
    digits.write_text('{"prompt": "a cat", "id": ' + "9" * 50_000 + "}\n")
    wide = tmp_path / "wide.csv"
    wide.write_text("id,prompt\n1,a cat\n2," + "x" * 131_073 + "\n")
    for path, where in ((deep, f"{deep}:2: JSON nested too deep"), (digits, f"{digits}:1: not usable JSON"),
                        (wide, f"{wide}:3: not usable CSV")):
        err = one_line_error(capsys, bench(str(path), tmp_path / f"out-{path.stem}"))
        assert err.startswith(f"error: {where}"), err
        assert len(err) < 400, err
