"""What a benchmark may touch (issue 10, items 3, 7 and 8): dataset ids never name paths, duplicate
ids are refused, the runner removes only what it made, one process writes an output directory, and
a full disk is one line that a rerun recovers from."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
import time

import pytest

from mllm_guidance.cli import main
from mllm_guidance.errors import InputError
from mllm_guidance.eval.runner import MARKER, RESULTS, BenchSpec, item_name, run_bench
from tests.fakes import SlowGenerator, StepChatModel


def jsonl(tmp_path, rows):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def spec(tmp_path, dataset, out="out", **kw):
    return BenchSpec(dataset=dataset, out=tmp_path / out, mllm=StepChatModel(), generator=SlowGenerator(0.0),
                     config={"self_correct": False}, concurrency=2, **kw)


def files_outside(root, allowed):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not str(p).startswith(str(allowed)))


def test_ids_that_look_like_paths_name_nothing_outside_out(tmp_path):
    victim = tmp_path / "x" / "victim-0"
    victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("mine")
    rows = [{"id": str(tmp_path / "x" / "victim"), "prompt": "a cat"}, {"id": "../../escaped", "prompt": "a dog"},
            {"id": "plain_id-1", "prompt": "a cow"}]
    records = asyncio.run(run_bench(spec(tmp_path, jsonl(tmp_path, rows))))
    assert all(r["status"] == "ok" for r in records) and len(records) == 3
    assert (victim / "keep.txt").read_text() == "mine" and sorted(os.listdir(victim)) == ["keep.txt"]
    assert files_outside(tmp_path, tmp_path / "out") == ["data.jsonl", "x", "x/victim-0", "x/victim-0/keep.txt"]
    keys = sorted(r["key"] for r in records)
    assert "plain_id-1-0" in keys and all("/" not in k and not k.startswith(".") for k in keys)
    assert {r["prompt_id"] for r in records} == {row["id"] for row in rows}  # the ids themselves are kept


def test_item_names_are_safe_and_distinct():
    ids = ["a/b", "a_b", "..", ".", "", "x" * 300, "ünïcode", "con", "a b"]
    names = [item_name(i) for i in ids]
    assert all(n and "/" not in n and not n.startswith(".") and len(n) <= 80 for n in names)
    assert len({n.casefold() for n in names}) == len(ids)
    assert item_name("plain_id-1") == "plain_id-1"


def test_duplicate_ids_are_refused_before_anything_is_written(tmp_path):
    rows = [{"id": "p1", "prompt": "a cat"}, {"id": "p1", "prompt": "a dog"}]
    with pytest.raises(InputError, match="'p1' is given twice"):
        asyncio.run(run_bench(spec(tmp_path, jsonl(tmp_path, rows))))
    rows = [{"id": "a/b", "prompt": "a cat"}, {"id": "a_b-" + item_name("a/b").rsplit("-", 1)[1], "prompt": "a dog"}]
    if item_name(rows[0]["id"]) == item_name(rows[1]["id"]):
        with pytest.raises(InputError, match="name the same files"):
            asyncio.run(run_bench(spec(tmp_path, jsonl(tmp_path, rows), out="out2")))
    assert not (tmp_path / "out").exists()


def test_the_runner_removes_only_run_directories_it_made(tmp_path):
    data = jsonl(tmp_path, [{"id": "p1", "prompt": "a cat"}, {"id": "p2", "prompt": "a dog"}])
    # what a killed attempt left (marked by the runner) and something else in the way
    ours = tmp_path / "out" / "runs" / "p1-0"
    ours.mkdir(parents=True)
    (ours / MARKER).write_text("p1-0\n")
    (ours / "calls.jsonl").write_text("half")
    theirs = tmp_path / "out" / "runs" / "p2-0"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("someone's notes")
    records = {r["key"]: r for r in asyncio.run(run_bench(spec(tmp_path, data)))}
    assert records["p1-0"]["status"] == "ok" and (ours / "run.json").exists()
    assert records["p2-0"]["status"] == "failed" and "was not made by this benchmark" in records["p2-0"]["error"]
    assert (theirs / "notes.txt").read_text() == "someone's notes"


@pytest.mark.parametrize("written", ["", "p1", "p1-0"])
def test_a_kill_while_the_marker_was_written_is_cleared_on_the_rerun(tmp_path, written):
    """A SIGKILL between making an item's directory and finishing its marker (seen in the Ray
    acceptance run): the marker is all the directory holds and it holds the start of the item's
    name, so the rerun knows the directory as its own. A marker with another name stays refused."""
    data = jsonl(tmp_path, [{"id": "p1", "prompt": "a cat"}])
    left = tmp_path / "out" / "runs" / "p1-0"
    left.mkdir(parents=True)
    (left / MARKER).write_text(written)
    records = asyncio.run(run_bench(spec(tmp_path, data)))
    assert [r["status"] for r in records] == ["ok"] and (left / "run.json").exists()
    other = tmp_path / "out2" / "runs" / "p1-0"
    other.mkdir(parents=True)
    (other / MARKER).write_text("p9")
    records = asyncio.run(run_bench(spec(tmp_path, data, out="out2")))
    assert records[0]["status"] == "failed" and "was not made by this benchmark" in records[0]["error"]


def test_a_second_benchmark_on_the_same_out_is_refused_naming_the_first(tmp_path, capsys):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom mllm_guidance.eval import lock\n"
         "with lock.exclusive(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n", str(out)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        data = tmp_path / "d.txt"
        data.write_text("a cat\n")
        started = time.perf_counter()
        code = main(["bench", "--dataset", str(data), "--method", "plain", "--generator", "sketch", "--quiet",
                     "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and f"pid {holder.pid}" in err and "in use by another benchmark" in err
        assert time.perf_counter() - started < 10  # at once, not after waiting
        assert not (out / RESULTS).exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed (-9 included): the lock went with it
    assert main(["bench", "--dataset", str(data), "--method", "plain", "--generator", "sketch", "--quiet",
                 "--out", str(out)]) == 0


def refuse_writes(monkeypatch, when):
    """The disk is full for every atomic write (os.replace) of a file ``when(name)`` picks."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if when(os.path.basename(str(dst))):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_a_full_disk_is_one_line_and_the_same_command_continues(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    run_dir = tmp_path / "run"
    args = ["generate", "A man is sitting under a tree while a bird is in the tree.", "--mllm",
            "replay:examples/recordings/man-under-tree.json", "--generator", "sketch", "--quiet", "--out", str(run_dir)]
    with monkeypatch.context() as m:
        refuse_writes(m, lambda name: name.startswith("round-1"))
        assert main(args) == 3  # it ran, and ended without its image: --resume continues
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no space left in ") and len(err.splitlines()) == 1 and "--resume" in err and "Traceback" not in err
    assert str(run_dir) in err and "needs" in err
    assert main(["generate", "--resume", str(run_dir), "--quiet"]) == 0
    assert (run_dir / "final.png").exists() and json.loads((run_dir / "run.json").read_text())["rounds"]


def test_a_run_stopped_by_a_full_disk_before_its_first_checkpoint_starts_again_in_place(tmp_path, capsys, monkeypatch):
    """Full right after spec.json (SQLite cannot write the checkpoint file): nothing in the
    directory can be resumed, so both the same command and --resume start the run again there
    (not 'already holds a run' / 'no checkpoint to resume')."""
    import sqlite3

    import mllm_guidance.run as run_module

    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    run_dir = tmp_path / "run"
    args = ["generate", "A man is sitting under a tree while a bird is in the tree.", "--mllm",
            "replay:examples/recordings/man-under-tree.json", "--generator", "sketch", "--quiet", "--out", str(run_dir)]

    async def full(path, before_write=None):
        raise sqlite3.OperationalError("database or disk is full")

    for again in (args, ["generate", "--resume", str(run_dir), "--quiet"]):
        with monkeypatch.context() as m:
            m.setattr(run_module, "async_sqlite_saver", full)
            assert main(args) == 2
        assert "no space left" in capsys.readouterr().err
        assert (run_dir / "spec.json").exists() and not (run_dir / "run.json").exists()
        assert main(again) == 0, capsys.readouterr().err
        assert (run_dir / "run.json").exists()
        capsys.readouterr()
        for name in os.listdir(run_dir):  # start over for the second way
            path = run_dir / name
            path.unlink() if path.is_file() else None


def test_a_full_call_log_after_the_first_checkpoint_is_resumed(tmp_path, capsys, monkeypatch):
    """Full at the first call-log line: the run's input is checkpointed, so the same command says
    how to resume it, and --resume finishes it."""
    import mllm_guidance.store as store

    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    run_dir = tmp_path / "run"
    args = ["generate", "A man is sitting under a tree while a bird is in the tree.", "--mllm",
            "replay:examples/recordings/man-under-tree.json", "--generator", "sketch", "--quiet", "--out", str(run_dir)]

    def full(path, line, lock, **kw):
        raise store.storage_error(OSError(errno.ENOSPC, "No space left on device"), path, len(line))

    with monkeypatch.context() as m:
        m.setattr(store, "append_line", full)
        assert main(args) == 2
    assert "no space left in" in capsys.readouterr().err
    assert main(args) == 2
    assert f"--resume {run_dir}" in capsys.readouterr().err
    assert main(["generate", "--resume", str(run_dir), "--quiet"]) == 0
    assert (run_dir / "run.json").exists()
