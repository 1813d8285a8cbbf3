"""What the Runs and Bench tabs show, read from files under the studio's roots.

Files are untrusted as names are: every path read from a run.json or a results.jsonl goes through
the same ``inside`` check as a typed name before Gradio may serve it, every file is read bounded
(``textfiles``), and every problem is one ``InputError`` line that names the run or benchmark, not
an errno text with the server's absolute paths.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from mllm_guidance.errors import InputError
from mllm_guidance.eval.runner import RESULTS, read_results
from mllm_guidance.studio.paths import inside
from mllm_guidance.textfiles import read_user_text


def read_record(run: Path, name: str) -> dict[str, Any]:
    """A run's run.json, or one line saying the run cannot be shown."""
    try:
        record = json.loads(read_user_text(run / "run.json", "run record"))
    except (InputError, ValueError, RecursionError):
        raise InputError(f"run {_short(name)} has no readable run.json; open a finished run") from None
    if not isinstance(record, dict) or not isinstance(record.get("rounds"), list):
        raise InputError(f"run {_short(name)}: its run.json is not a run record")
    return record


def file_of(root: Path, name: Any, what: str) -> Path:
    """A file named inside a record, checked like a typed name."""
    if not isinstance(name, str):
        raise InputError(f"{what} names a file that is not a path")
    try:
        return inside(root, name, what)
    except InputError:
        raise InputError(f"{what} names a file outside its directory; it is not shown") from None


def run_view(runs_root: Path, name: str) -> tuple[list[tuple[str, str]], str]:
    """A run's rounds (images and scores) and its summary as Markdown."""
    path = inside(runs_root, name, "run")
    record = read_record(path, name)
    try:
        gallery = [(str(file_of(path, r["image"]["path"], f"run {_short(name)}")), f"round {r['index']}: {r.get('score')}/5")
                   for r in record["rounds"]]
        u = record["usage"]
        rows = "\n".join(f"| {r['index']} | {r.get('score')} | {str(r.get('reasoning') or '').replace('|', '/')[:160]} |"
                         for r in record["rounds"])
        cost = u.get("estimated_cost_usd")
        text = (f"**{record['prompt']}**  \nbest round {record['best_round']}, score {record['score']}/5, "
                f"stop: {record['stop_reason']}  \n{u['mllm_calls']} MLLM calls, {u['generator_calls']} renders, "
                f"tokens {u['input_tokens']} in / {u['output_tokens']} out, cost "
                f"{'unknown' if not isinstance(cost, (int, float)) else '$%.4f' % cost}\n\n"
                f"| round | score | reasoning |\n|---|---|---|\n{rows}")
    except (KeyError, TypeError, AttributeError):
        raise InputError(f"run {_short(name)}: its run.json is not a run record this version reads") from None
    return gallery, text


def bench_view(bench_root: Path, names: list[str] | str | None, failed_only: bool,
               lowest_first: bool) -> tuple[str, list[tuple[str, str]]]:
    """The summaries of one or more benchmark directories (picked names, or one comma-separated
    string) and their images side by side per prompt."""
    picked = names.split(",") if isinstance(names, str) else [str(n) for n in names or []]
    dirs = [(n.strip(), inside(bench_root, n, "benchmark")) for n in picked if n.strip()]
    if not dirs:
        raise InputError("pick one or more benchmark directories")
    parts, by_prompt = [], {}
    for label, d in dirs:
        try:
            records = read_results(d / RESULTS)
        except InputError:
            raise InputError(f"benchmark {_short(label)}: its results.jsonl cannot be read") from None
        if not records:
            raise InputError(f"benchmark {_short(label)} has no results.jsonl")
        summary = ""
        if (d / "summary.md").exists():
            try:
                summary = read_user_text(d / "summary.md", "run record")
            except InputError:
                raise InputError(f"benchmark {_short(label)}: its summary.md cannot be read") from None
        scores = Counter(r.get("final_score") for r in records if r.get("status") == "ok")
        bars = " ".join(f"{s}: {'█' * scores.get(s, 0)} {scores.get(s, 0)}" for s in range(1, 6))
        parts.append(f"### {d.name}\n{summary}\n\nfinal scores — {bars}")
        for r in records:
            by_prompt.setdefault(str(r["key"]), []).append((label, d, r))
    rows = list(by_prompt.values())
    if failed_only:
        rows = [row for row in rows if any(r.get("status") != "ok" for _, _, r in row)]
    if lowest_first:
        rows.sort(key=lambda row: min(_score(r) for _, _, r in row))
    gallery = [(str(file_of(d, r["image"], f"benchmark {_short(label)}")), f"{d.name} · {r['key']} · {r.get('final_score')}/5")
               for row in rows[:24] for label, d, r in row if r.get("status") == "ok" and r.get("image")]
    return "\n\n".join(parts), gallery


def _score(record: dict[str, Any]) -> int:
    score = record.get("final_score")
    return score if isinstance(score, int) else 0


def _short(value: str, limit: int = 60) -> str:
    """A name as messages quote it: its start only, when long."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."
