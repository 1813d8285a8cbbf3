"""The studio serves only files inside its roots and says what went wrong in one clean line
(issue 20, item 6): paths read from a run.json or a results.jsonl are checked like typed names."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("gradio", reason="the studio extra (gradio) is not installed")
pytest.importorskip("gradio_image_annotation", reason="the studio extra is not installed")

from mllm_guidance.errors import InputError  # noqa: E402


@pytest.fixture
def roots(tmp_path):
    from mllm_guidance import guide
    from tests.cli.test_cli import PROMPT, RECORDING

    runs, bench = tmp_path / "runs", tmp_path / "bench"
    guide(PROMPT, mllm=f"replay:{RECORDING}", generator="sketch", run_dir=runs / "good")
    (tmp_path / "keys.env").write_text("OPENAI_API_KEY=sk-planted-0000000000000000\n")
    return runs, bench, tmp_path / "keys.env"


def planted_run(runs, secret):
    bad = runs / "planted"
    bad.mkdir()
    record = json.loads((runs / "good" / "run.json").read_text())
    record["rounds"][0]["image"]["path"] = str(secret)
    (bad / "run.json").write_text(json.dumps(record))
    return bad


def test_a_run_json_naming_a_file_outside_is_refused(roots):
    from mllm_guidance.studio.views import run_view

    runs, _, secret = roots
    gallery, text = run_view(runs, "good")
    assert len(gallery) == 3 and all(path.startswith(str(runs / "good")) for path, _ in gallery)
    planted_run(runs, secret)
    with pytest.raises(InputError, match="names a file outside its directory") as refused:
        run_view(runs, "planted")
    assert len(str(refused.value)) < 200 and "keys.env" not in str(refused.value)


def test_a_results_jsonl_naming_a_file_outside_is_refused(roots):
    from mllm_guidance.studio.views import bench_view

    _, bench, secret = roots
    (bench / "b1").mkdir(parents=True)
    (bench / "b1" / "results.jsonl").write_text(json.dumps({"key": "p1", "status": "ok", "final_score": 5,
                                                            "image": str(secret)}) + "\n")
    with pytest.raises(InputError, match="benchmark 'b1' names a file outside its directory"):
        bench_view(bench, "b1", False, True)
    (bench / "b2").mkdir()
    os.symlink("/dev/zero", bench / "b2" / "results.jsonl")
    with pytest.raises(InputError, match="benchmark 'b2': its results.jsonl cannot be read"):
        bench_view(bench, "b2", False, True)


@pytest.mark.parametrize("name, message", [
    ("nope", "run 'nope' has no readable run.json"),
    ("a\0b", "cannot hold a NUL character"),
    ("../../etc", "is outside the studio's run directory"),
    ("x" * 5000, "is not a usable run name|has no readable run.json"),
])
def test_studio_errors_are_one_clean_line(roots, name, message, capfd):
    """The page's toast is one line with no errno text or absolute paths, and the terminal gets
    one line, not a Gradio traceback."""
    import gradio as gr

    from mllm_guidance.studio.app import _errors
    from mllm_guidance.studio.views import run_view

    runs, _, _ = roots
    with pytest.raises(gr.Error) as shown:
        _errors(lambda n: run_view(runs, n))(name)
    text = shown.value.message
    assert len(text.splitlines()) == 1 and len(text) < 300, text
    assert str(runs) not in text and "Errno" not in text and "embedded null byte" not in text, text
    import re

    assert re.search(message, text), text
    assert shown.value.print_exception is False
    err = capfd.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
