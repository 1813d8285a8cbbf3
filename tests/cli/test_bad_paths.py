"""About twenty bad paths and files a careless user gives: each one line that names the problem
(exit status 2), never a traceback, and nothing written where it should not be (issue 10, item 9)."""

from __future__ import annotations


import pytest

from mllm_guidance.cli import main

RECORDING = "examples/recordings/man-under-tree.json"


def one_line_error(capsys, args: list[str]) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    if "--limit" in args:  # refused by the flag's own range: the command line's usage error
        assert "Invalid value for '--limit'" in err, err
        return err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


def gen(*extra: str) -> list[str]:
    return ["generate", "a cat on a mat", "--mllm", f"replay:{RECORDING}", "--generator", "sketch", "--quiet", *extra]


def bench(dataset: str, out, *extra: str) -> list[str]:
    return ["bench", "--dataset", dataset, "--method", "plain", "--generator", "sketch", "--quiet", "--out", str(out), *extra]


def non_utf8(path):
    path.write_bytes(b"\xff\xfe a cat \xc3\x28 on a mat\n")
    return path


CASES = {
    "generate --out on a file": lambda t: gen("--out", str(_file(t / "f"))),
    "generate --out under a file": lambda t: gen("--out", str(_file(t / "f") / "run")),
    "--templates that does not exist": lambda t: gen("--templates", str(t / "nope"), "--out", str(t / "r")),
    "--templates with a non-UTF-8 file": lambda t: gen("--templates", str(_templates(t, b"\xff\xfe\x00bad")), "--out", str(t / "r")),
    "--templates that is a file": lambda t: gen("--templates", str(_file(t / "tpl")), "--out", str(t / "r")),
    "replay: recording that does not exist": lambda t: ["generate", "a cat", "--mllm", f"replay:{t / 'nope.json'}", "--generator", "sketch", "--quiet", "--out", str(t / "r")],
    "replay: recording not UTF-8": lambda t: ["generate", "a cat", "--mllm", f"replay:{non_utf8(t / 'r.json')}", "--generator", "sketch", "--quiet", "--out", str(t / "r")],
    "replay: recording not JSON": lambda t: ["generate", "a cat", "--mllm", f"replay:{_file(t / 'r.json', b'{not json')}", "--generator", "sketch", "--quiet", "--out", str(t / "r")],
    "replay: recording that is a directory": lambda t: ["generate", "a cat", "--mllm", f"replay:{t}", "--generator", "sketch", "--quiet", "--out", str(t / "r")],
    "--model-path with sketch": lambda t: gen("--model-path", str(t), "--out", str(t / "r")),
    "--resume a directory that does not exist": lambda t: ["generate", "--resume", str(t / "nope"), "--quiet"],
    "--resume a file": lambda t: ["generate", "--resume", str(_file(t / "f")), "--quiet"],
    "--resume a run with a broken spec.json": lambda t: ["generate", "--resume", str(_broken_run(t)), "--quiet"],
    "--prices that does not exist": lambda t: gen("--prices", str(t / "nope.json"), "--out", str(t / "r")),
    "--prices not JSON": lambda t: gen("--prices", str(_file(t / "p.json", b"{prices")), "--out", str(t / "r")),
    "bench dataset that does not exist": lambda t: bench(str(t / "nope.txt"), t / "o"),
    "bench dataset not UTF-8": lambda t: bench(str(non_utf8(t / "d.txt")), t / "o"),
    "bench dataset JSONL with a broken line": lambda t: bench(str(_file(t / "d.jsonl", b'{"prompt": "a cat"}\n{broken\n')), t / "o"),
    "bench dataset CSV without a prompt column": lambda t: bench(str(_file(t / "d.csv", b"text,id\na cat,1\n")), t / "o"),
    "bench dataset that is empty": lambda t: bench(str(_file(t / "d.txt", b"\n\n")), t / "o"),
    "bench dataset that is a directory": lambda t: bench(str(t), t / "o"),
    "bench --out on a file": lambda t: bench(str(_file(t / "d.txt", b"a cat\n")), _file(t / "o")),
    "bench --limit -1": lambda t: bench(str(_file(t / "d.txt", b"a cat\n")), t / "o", "--limit", "-1"),
    "bench --limit 0": lambda t: bench(str(_file(t / "d.txt", b"a cat\n")), t / "o", "--limit", "0"),
    "bench correlate with a missing ratings file": lambda t: ["bench", "correlate", "--human", str(t / "nope.csv"), str(t)],
    "trace show a directory that does not exist": lambda t: ["trace", "show", str(t / "nope")],
    "templates export onto a file": lambda t: ["templates", "export", str(_file(t / "f"))],
}


def _file(path, data: bytes = b"x"):
    path.write_bytes(data)
    return path


def _templates(t, data: bytes):
    d = t / "tpl"
    d.mkdir()
    (d / "place.txt").write_bytes(data)
    return d


def _broken_run(t):
    d = t / "run"
    d.mkdir()
    (d / "spec.json").write_text("{half a spec")
    (d / "checkpoints.sqlite").write_bytes(b"")
    return d


def test_there_are_at_least_twenty_cases():
    assert len(CASES) >= 20


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_path_is_one_line(case, tmp_path, capsys, monkeypatch):
    import pathlib

    monkeypatch.chdir(pathlib.Path(__file__).resolve().parents[2])  # the recording's relative path
    one_line_error(capsys, CASES[case](tmp_path))
