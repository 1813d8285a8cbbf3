"""``mllm-guidance mvae``: the CSV format, markdown marks, resume, agreement counting, the train command,
and that ``--help`` never imports torch."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("scipy")

from mllm_guidance.cli import main  # noqa: E402
from weighted_mvae.reproduce import agreement, claim_check, load_records, markdown, run_table, summarise, write_outputs  # noqa: E402
from weighted_mvae.tables import TABLES, get_table  # noqa: E402
from weighted_mvae.train import default_settings  # noqa: E402


def test_help_does_not_import_torch():
    code = ("import sys; from mllm_guidance.cli import main; main(['mvae', '--help']); main(['--help']); "
            "assert 'torch' not in sys.modules and 'weighted_mvae.model' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "reproduce" in done.stdout and "mvae" in done.stdout


def test_weighted_mvae_imports_nothing_of_mllm_guidance():
    code = ("import sys, weighted_mvae.cli, weighted_mvae.reproduce, weighted_mvae.train; "
            "assert not [m for m in sys.modules if m.startswith('mllm_guidance')]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reproduce_writes_the_csv_and_resumes(tmp_path):
    out = tmp_path / "t31"
    settings = default_settings("gaussian", epochs=1, train_size=500, test_size=300)
    rows = ("equal", "m1-x2", "auto:generates-best")
    run_table("3.1", 1, out, settings=settings, rows=rows)
    first = load_records(out, get_table("3.1"))
    assert len(first) == 3
    lines = []
    run_table("3.1", 2, out, settings=settings, rows=rows, progress=lines.append)
    assert len(lines) == 3 and all("run 2/2" in line for line in lines)  # only the unfinished runs
    assert len(load_records(out, get_table("3.1"))) == 6
    with pytest.raises(ValueError, match="other settings"):
        run_table("3.1", 2, out, settings=default_settings("gaussian", epochs=2), rows=rows)
    paths = write_outputs("3.1", 2, out)
    with paths["csv"].open() as f:
        table = list(csv.reader(f))
    assert table[0] == ["row", "metric", "mean", "std", "n"]
    assert [r[0] for r in table[1:]] == [r for r in rows for _ in range(4)]
    assert [r[1] for r in table[1:5]] == ["out1", "out2", "out3", "total"] and {r[4] for r in table[1:]} == {"2"}
    total = float(table[4][2])
    assert total == pytest.approx(sum(float(r[2]) for r in table[1:4]), abs=1e-5)
    md = paths["md"].read_text()
    assert "(0.4611)" in md and "Üretebilen" in md and "p=" in md
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def _summary(values_by_row, metrics):
    records = [{"row": row, "run": k, "metrics": dict(zip(metrics, vals))}
               for row, runs in values_by_row.items() for k, vals in enumerate(runs)]
    return records


def test_marks_p_values_and_agreement_on_made_up_numbers():
    table = TABLES["3.3"]
    m = table.metrics
    # classic around the thesis's equal row; image-x2 clearly lower on J2I and I2I, higher on J2T
    eq = [table.thesis["equal"]] * 4
    rows = {"equal": [tuple(v + 0.001 * k for v in eq[0]) for k in range(4)],
            "image-x2": [tuple(v - (0.05 if i in (0, 2, 5) else -0.05) + 0.001 * k + 0.0004 * (k % 2) for i, v in enumerate(eq[0]))
                         for k in range(4)]}
    summary = summarise(_summary(rows, m), table)
    assert summary["image-x2"]["J2I"]["p"] < 0.05 and np.isnan(summary["equal"]["J2I"]["p"])
    md = markdown(summary, table, 4)
    assert "_**0.1559±0.0014**_" in md and "(0.1919)" in md
    agree = agreement(summary, table)
    # thesis image-x2: J2I, I2I, T2T lower; J2T, I2T, T2I higher -> all six match the made-up directions
    assert agree["compared"] == 6 and agree["agree"] == 6 and agree["agree_significant"] == 6
    claim = claim_check(summary)
    assert any(line.startswith("- image-x2 improves I2I, J2I, T2T as claimed: 3/3") for line in claim)


def write_digits(path, n=3100, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for k, label in enumerate(labels):  # a bar whose place says the class
        images[k, 2 * label + 3: 2 * label + 6, 4:24] = 200 + rng.integers(0, 55)
    np.savez(path / "mnist-test.npz", images=images, labels=labels)


def test_train_command_writes_checkpoint_errors_and_grid(tmp_path, capsys):
    write_digits(tmp_path)
    out = tmp_path / "run"
    code = main(["mvae", "train", "--data", "mnist", "--expert", "moe", "--weighting", "auto:generated-worst",
                 "--data-dir", str(tmp_path), "--epochs", "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr()
    assert "epoch 2/2" in printed.err and "I2T" in printed.out
    record = json.loads((out / "errors.json").read_text())
    assert set(record["errors"]) == {"J2I", "J2T", "I2I", "I2T", "T2I", "T2T"} and len(record["labels_read_back"]) == 10
    assert (out / "grid.png").read_bytes()[:4] == b"\x89PNG"
    saved = torch.load(out / "model.pt")
    assert saved["rule"] == "gmoe" and saved["names"] == ["image", "text"]


@pytest.mark.parametrize("argv,message", [
    (["mvae", "train", "--data", "cifar", "--out", "x"], "--data 'cifar'"),
    (["mvae", "train", "--data", "mnist", "--out", "x"], "--data-dir is needed"),
    (["mvae", "train", "--data", "gaussian", "--weighting", "loud", "--out", "x"], "unknown weighting"),
    (["mvae", "reproduce", "--table", "3.9", "--out", "x"], "unknown table"),
    (["mvae", "reproduce", "--table", "3.1", "--out", "x", "--device", "tpu"], "use cpu or cuda"),
])
def test_bad_input_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_jobs_give_the_same_records_as_one_process(tmp_path):
    settings = default_settings("gaussian", epochs=1, train_size=300, test_size=200)
    rows = ("equal", "m3-x2")
    alone = run_table("3.2", 2, tmp_path / "a", settings=settings, rows=rows)
    pooled = run_table("3.2", 2, tmp_path / "b", settings=settings, rows=rows, jobs=2)
    key = lambda r: (r["row"], r["run"])  # noqa: E731
    assert [key(r) for r in sorted(alone, key=key)] == [key(r) for r in sorted(pooled, key=key)]
    for a, b in zip(sorted(alone, key=key), sorted(pooled, key=key)):  # thread counts may differ: float noise only
        assert a["metrics"] == pytest.approx(b["metrics"], rel=1e-3)


def test_an_interrupted_table_is_summarised_over_whole_runs():
    from weighted_mvae.reproduce import complete_runs

    table = TABLES["3.1"]
    metrics = dict.fromkeys(table.metrics, 0.5)
    records = [{"row": row, "run": run, "metrics": metrics} for run in (0, 1) for row in table.rows]
    records += [{"row": "equal", "run": 2, "metrics": metrics}]
    assert {r["run"] for r in complete_runs(records, table)} == {0, 1}
