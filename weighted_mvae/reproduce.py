"""``reproduce``: every row of one thesis table over N random training sets, then the CSV, the
markdown table (thesis value beside each cell, better-than-classic marks, t-test p-values) and a plot.

Each (row, run) result is appended to ``table-3.X.runs.jsonl`` as soon as it is done, so a killed
``reproduce`` resumes at the next unfinished run; its settings are kept beside it and a resume with
other settings is refused. Run r of every row uses seed r: the same training draw for every row, so
rows differ by their weighting only. p-values: two-sided t-tests of a row's N values against the
classic row's: paired by run (``scipy.stats.ttest_rel``) when both rows hold the same runs, which is
what this design gives, else Welch's (``ttest_ind``, ``equal_var=False``); the thesis's test is
unnamed.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from collections.abc import Callable
from pathlib import Path
from typing import Any

from weighted_mvae.tables import THESIS_LABELS, Table, get_table

#: The chapter's closing claim, per image metric: which weighting should lower (improve) it.
IMAGE_IMPROVES = {"image": ("I2I", "J2I", "T2T"), "text": ("I2T", "J2T")}
LIKE_IMAGE = ("auto:generates-best", "auto:generated-worst")
LIKE_TEXT = ("auto:generates-worst", "auto:generated-best")


class ReproduceError(ValueError):
    """A reproduce directory that cannot be resumed as asked."""


def _runs_file(out: Path, table: Table) -> Path:
    return out / f"table-{table.number}.runs.jsonl"


def load_records(out: Path, table: Table) -> list[dict[str, Any]]:
    path = _runs_file(out, table)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill: that run is simply done again
                continue
    return records


@functools.lru_cache(maxsize=2)
def _source(dataset: str, data_dir: str | None) -> Any:
    from weighted_mvae.data import load_image_labels

    return None if dataset == "gaussian" else load_image_labels(dataset, data_dir)


def _one(number: str, row: str, run: int, settings: Any, data_dir: str | None, device: str) -> dict[str, Any]:
    """One (row, run): train, evaluate, and the record that goes into the runs file."""
    from weighted_mvae.train import run_once

    table = get_table(number)
    _, metrics, history = run_once(table.dataset, table.expert, row, run, settings,
                                   source=_source(table.dataset, data_dir), device=device)
    return {"row": row, "run": run, "metrics": metrics, "seconds": round(history["seconds"], 3),
            "final_weights": history["weights"][-1]}


def _worker_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_table(number: str, runs: int, out: Path, *, data_dir: str | None = None, device: str = "cpu",
              settings: Any = None, rows: tuple[str, ...] | None = None, jobs: int = 1, threads: int = 1,
              progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Train and evaluate every (row, run) not yet in ``out``; returns all records of the table.
    ``jobs`` > 1 trains that many runs at once in worker processes of ``threads`` torch threads each."""
    from weighted_mvae.train import default_settings

    table = get_table(number)
    settings = settings or default_settings(table.dataset)
    out.mkdir(parents=True, exist_ok=True)
    settings_file = out / f"table-{table.number}.settings.json"
    wanted = {"settings": settings.to_dict(), "expert": table.expert, "dataset": table.dataset}
    wanted = json.loads(json.dumps(wanted))
    if settings_file.exists() and json.loads(settings_file.read_text()) != wanted:
        raise ReproduceError(f"{out} holds table {table.number} runs made with other settings; use another --out")
    settings_file.write_text(json.dumps(wanted, indent=1) + "\n")
    _source(table.dataset, data_dir)  # a data error shows before any training
    records = load_records(out, table)
    done = {(r["row"], r["run"]) for r in records}
    todo = [(row, run) for run in range(runs) for row in (rows or table.rows) if (row, run) not in done]
    started = time.perf_counter()
    args = [(table.number, row, run, settings, data_dir, device) for row, run in todo]
    with _runs_file(out, table).open("a") as sink, contextlib.ExitStack() as stack:
        if jobs > 1 and len(todo) > 1:
            pool = stack.enter_context(ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                                           initializer=_worker_threads, initargs=(threads,)))
            results = (f.result() for f in as_completed([pool.submit(_one, *a) for a in args]))
        else:
            results = (_one(*a) for a in args)
        for k, record in enumerate(results):
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            records.append(record)
            if progress:
                elapsed = time.perf_counter() - started
                progress(f"table {table.number} run {record['run'] + 1}/{runs} {record['row']}: "
                         + " ".join(f"{m}={v:.4f}" for m, v in record["metrics"].items())
                         + f"  [{k + 1}/{len(todo)}, {elapsed:.0f}s]")
    return records


def complete_runs(records: list[dict[str, Any]], table: Table) -> list[dict[str, Any]]:
    """The records of the runs that every row of the table finished (an interrupted table is then
    summarised over whole runs, each row over the same training draws)."""
    rows_of: dict[int, set[str]] = {}
    for r in records:
        rows_of.setdefault(r["run"], set()).add(r["row"])
    done = {run for run, rows in rows_of.items() if set(table.rows) <= rows}
    return [r for r in records if r["run"] in done] if done else records


def summarise(records: list[dict[str, Any]], table: Table) -> dict[str, dict[str, dict[str, Any]]]:
    """row -> metric -> mean, std (n-1), n, values, p (vs the classic row: paired by run, else Welch)."""
    from scipy import stats

    values: dict[str, dict[str, list[float]]] = {}
    run_ids: dict[str, list[int]] = {}
    for r in sorted(records, key=lambda r: r["run"]):
        run_ids.setdefault(r["row"], []).append(r["run"])
        for m in table.metrics:
            values.setdefault(r["row"], {}).setdefault(m, []).append(float(r["metrics"][m]))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for row in table.rows:
        if row not in values:
            continue
        out[row] = {}
        for m in table.metrics:
            v = values[row][m]
            n = len(v)
            mean = sum(v) / n
            std = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else 0.0
            p = float("nan")
            base = values.get("equal", {}).get(m, [])
            if row != "equal" and n > 1 and len(base) > 1:
                if run_ids[row] == run_ids["equal"]:
                    p = float(stats.ttest_rel(v, base).pvalue) if any(a != b for a, b in zip(v, base)) else 1.0
                else:
                    p = float(stats.ttest_ind(v, base, equal_var=False).pvalue)
            out[row][m] = {"mean": mean, "std": std, "n": n, "values": v, "p": p}
    return out


def write_csv(summary: dict[str, dict[str, dict[str, Any]]], table: Table, path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row", "metric", "mean", "std", "n"])
        for row, cells in summary.items():
            for m in table.metrics:
                c = cells[m]
                w.writerow([row, m, f"{c['mean']:.6f}", f"{c['std']:.6f}", c["n"]])


def agreement(summary: dict[str, dict[str, dict[str, Any]]], table: Table) -> dict[str, Any]:
    """Per weighted row and metric: does our direction vs the classic row match the thesis's, and is
    ours significant (p < 0.05)? Ties in the thesis (equal to 4 decimals) are not counted."""
    cells = []
    if not table.thesis or "equal" not in summary:
        return {"cells": cells, "compared": 0, "agree": 0, "agree_significant": 0, "disagree_significant": 0}
    for row in table.rows[1:]:
        if row not in summary:
            continue
        for k, m in enumerate(table.metrics):
            thesis_diff = table.thesis[row][k] - table.thesis["equal"][k]
            ours_diff = summary[row][m]["mean"] - summary["equal"][m]["mean"]
            if abs(thesis_diff) < 1e-9:
                continue
            same = (thesis_diff < 0) == (ours_diff < 0)
            sig = summary[row][m]["p"] < 0.05
            cells.append({"row": row, "metric": m, "thesis_better": thesis_diff < 0, "ours_better": ours_diff < 0,
                          "agree": same, "significant": sig, "p": summary[row][m]["p"]})
    return {"cells": cells, "compared": len(cells), "agree": sum(c["agree"] for c in cells),
            "agree_significant": sum(c["agree"] and c["significant"] for c in cells),
            "disagree_significant": sum((not c["agree"]) and c["significant"] for c in cells)}


def claim_check(summary: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """The chapter's closing claim on an image + label table, one line per part, with our evidence."""
    lines = []
    if "equal" not in summary:
        return lines

    def diff(row: str, m: str) -> float:
        return summary[row][m]["mean"] - summary["equal"][m]["mean"]

    for who, metrics in IMAGE_IMPROVES.items():
        for factor in ("x2", "x3"):
            row = f"{who}-{factor}"
            if row not in summary:
                continue
            parts = [f"{m} {'lower' if diff(row, m) < 0 else 'higher'} (p={summary[row][m]['p']:.3g})" for m in metrics]
            held = sum(diff(row, m) < 0 for m in metrics)
            lines.append(f"- {row} improves {', '.join(metrics)} as claimed: {held}/{len(metrics)} ({'; '.join(parts)})")
    metrics = list(next(iter(summary.values())))
    for like, rows in (("image", LIKE_IMAGE), ("text", LIKE_TEXT)):
        refs = [r for r in (f"{like}-x2", f"{like}-x3") if r in summary]
        if not refs:
            continue
        for row in rows:
            if row not in summary:
                continue
            ref_sign = {m: sum(diff(r, m) for r in refs) < 0 for m in metrics}
            same = [m for m in metrics if (diff(row, m) < 0) == ref_sign[m]]
            lines.append(f"- {row} moves like {like} weighting on {len(same)}/{len(metrics)} metrics ({', '.join(same) or 'none'})")
    return lines


def _cell(c: dict[str, Any], classic: dict[str, Any] | None, thesis: float | None) -> str:
    text = f"{c['mean']:.4f}±{c['std']:.4f}"
    if classic is not None and c["mean"] < classic["mean"]:
        text = f"**{text}**"
    if classic is not None and c["p"] < 0.05:
        text = f"_{text}_"
    if classic is not None and not math.isnan(c["p"]):
        text += f" p={c['p']:.2g}"
    if thesis is not None:
        text += f" ({thesis:g})"
    return text


def markdown(summary: dict[str, dict[str, dict[str, Any]]], table: Table, runs: int) -> str:
    n = min((c["n"] for cells in summary.values() for c in cells.values()), default=0)
    lines = [f"# Table {table.number}: {table.expert.upper()} on {table.dataset}", "",
             f"Mean ± std over {n} runs (asked: {runs}); lower is better. **bold** = better than the classic row, "
             "_italic_ = two-sided t-test against the classic row (paired by run) p < 0.05 (p shown); "
             + ("the thesis's value in parentheses." if table.thesis else "the thesis's values are not known to the package."),
             "", "| weighting | thesis row | " + " | ".join(table.metrics) + " |",
             "|---|---|" + "---|" * len(table.metrics)]
    classic = summary.get("equal")
    for row, cells in summary.items():
        thesis = table.thesis[row] if table.thesis else None
        lines.append(f"| {row} | {THESIS_LABELS[row]} | " + " | ".join(
            _cell(cells[m], None if row == "equal" else classic[m] if classic else None,
                  thesis[k] if thesis else None) for k, m in enumerate(table.metrics)) + " |")
    agree = agreement(summary, table)
    if agree["compared"]:
        lines += ["", f"Direction vs the classic row agrees with the thesis in {agree['agree']} of {agree['compared']} cells "
                  f"({agree['agree_significant']} of them significant here); {agree['disagree_significant']} significant disagreements."]
    if table.dataset != "gaussian":
        claim = claim_check(summary)
        if claim:
            lines += ["", "The chapter's claim (image dominant, text recessive):", *claim]
    return "\n".join(lines) + "\n"


def write_outputs(number: str, runs: int, out: Path) -> dict[str, Path]:
    """CSV, markdown and PNG plot of what ``out`` holds for the table."""
    from weighted_mvae.plots import table_plot

    table = get_table(number)
    summary = summarise(complete_runs(load_records(out, table), table), table)
    if not summary:
        raise ReproduceError(f"{out}: no finished runs of table {table.number}")
    paths = {"csv": out / f"table-{table.number}.csv", "md": out / f"table-{table.number}.md",
             "png": out / f"table-{table.number}.png"}
    write_csv(summary, table, paths["csv"])
    paths["md"].write_text(markdown(summary, table, runs))
    table_plot(summary, table).save(paths["png"])
    return paths
