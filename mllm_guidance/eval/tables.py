"""Result tables: a run's summary (its models, judge, scale and templates in the header; the
metrics, each named by its reference; cost), side-by-side comparisons of runs, and the correlation
of every metric with human ratings (the thesis's Table 6.2).

A note on the thesis's Table 6.3 (see docs/evaluation.md): the thesis does not say how its judge
scores were normalized. All 35 values are k/1200 to the printed four decimals (a 4-decimal value
hits that grid by chance with p = 0.12). A mean of s/5 over 300 images of 1..5 scores lies on a
1/1500 grid, which only 9 of the 35 fit (exactly those on the 1/300 grid the two grids share), so
the table is not score/5 over 300 images; (s-1)/4 over 300 images gives the 1/1200 grid (so would
other recipes, the grid cannot tell which). Every table written here states its judge scale, and
no column claims to be comparable with Table 6.3.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mllm_guidance.errors import BackendError, InputError

#: Metric key -> column header naming its reference; ``{scale}`` is the judge's stated scale.
METRICS = [
    ("mllm", "MLLM judge: T2I-CompBench [{scale}]"),
    ("mllm_reason", "MLLM judge: reason rubric [{scale}]"),
    ("clipscore_cos", "CLIP cosine: T2I-CompBench"),
    ("clipscore", "CLIPScore: Hessel et al. (2.5·max(cos,0))"),
    ("blip_vqa", "BLIP-VQA: T2I-CompBench"),
    ("blip_clip", "BLIP-CLIP: Attend-and-Excite{recipe}"),
    ("text_word_accuracy", "Text word accuracy: OneIG-Bench (OCR)"),
    ("text_ned", "Text normalised edit distance (OCR)"),
    ("text_edit_distance", "Text edit distance: OneIG-Bench (OCR)"),
    ("text_exact", "Text exact: OneIG-Bench CR (OCR)"),
    ("vqascore", "VQAScore: t2v_metrics{vqa}"),
    ("geneval", "GenEval: correct images"),
    ("dpg", "DPG-Bench: image score (0-1)"),
    ("layout_recall", "Layout recall@0.5 (detector)"),
    ("layout_miou", "Layout mean IoU (detector)"),
]
KEY_SCORER = {"mllm": "mllm", "mllm_reason": "mllm-reason", "clipscore_cos": "clipscore", "clipscore": "clipscore",
              "blip_vqa": "blip-vqa", "blip_clip": "blip-clip", "text_word_accuracy": "text-rendering",
              "text_ned": "text-rendering", "text_edit_distance": "text-rendering", "text_exact": "text-rendering",
              "layout_recall": "layout-adherence", "layout_miou": "layout-adherence", "vqascore": "vqascore", "geneval": "geneval",
              "dpg": "dpg-bench"}
#: Run columns every table carries (summary.md prints them above its table).
RUN_COLUMNS = ("generator", "guide MLLM", "judge", "judge scale", "template set")


def metric_headers(records: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(metric key, column header) with the run's judge scale and BLIP-CLIP recipe filled in."""
    mllm = _scoring(records, "mllm") or {}
    reason = _scoring(records, "mllm-reason") or {}
    blip_clip = (_scoring(records, "blip-clip") or {}).get("settings", {})
    recipe = "" if blip_clip.get("recipe", "attend-and-excite") == "attend-and-excite" else " recipe, BLIP-2 captions"
    vqa_settings = _settings(records, "vqascore") or {}
    vqa = f" ({vqa_settings.get('model')}{'' if vqa_settings.get('compare_with_paper') else ', not the paper model'})" if vqa_settings else ""
    out = []
    for key, header in METRICS:
        scale = (reason if key == "mllm_reason" else mllm).get("scale", "s/5")
        out.append((key, header.format(scale=scale, recipe=recipe, vqa=vqa)))
    return out


def run_info(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Generator, guide MLLM, judge, judge scale and template set of a run's records."""
    ok = [r for r in records if r.get("status") == "ok"] or list(records)
    first = ok[0] if ok else {}
    models = first.get("models") or {}
    judges, scales = [], []
    for name, label in (("mllm", ""), ("mllm-reason", "reason rubric: ")):
        scoring = _scoring(records, name)
        if scoring:
            s = scoring.get("settings", {})
            categories = sorted({(r.get("scoring") or {}).get(name, {}).get("category") for r in ok} - {None})
            parts = [f"{label}{s.get('model')}", s.get("protocol"), "/".join(categories) or None,
                     f"T={'provider default' if s.get('temperature') is None else s.get('temperature')}", f"x{s.get('repeats')}", s.get("prompt_version")]
            judges.append(" · ".join(str(p) for p in parts if p))
            scales.append(f"{label}{scoring.get('scale')}")
    # backends spelled as the user named them (spec strings, as the judge is), the class for objects
    return {"generator": models.get("generator_spec") or models.get("generator"),
            "guide MLLM": models.get("mllm_spec") or models.get("mllm"), "judge": "; ".join(judges) or None,
            "judge scale": "; ".join(scales) or None, "template set": first.get("template_set")}


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One summary row for a run directory's records."""
    ok = [r for r in records if r.get("status") == "ok"]
    first = records[0] if records else {}
    row: dict[str, Any] = {"method": first.get("method"), "dataset": first.get("dataset"), **run_info(records),
                           "images": len(ok), "failed": len(records) - len(ok)}
    judged = [r for r in ok if "mllm" in (r.get("scoring") or {})]
    if judged:
        row["judge unscored"] = sum("mllm" not in (r.get("metrics") or {}) for r in judged)
    row["guide score (mean score/5)"] = _mean([r["final_score"] / 5 for r in ok if r.get("final_score") is not None])
    for key, header in metric_headers(records):
        value = _mean([r["metrics"][key] for r in ok if key in (r.get("metrics") or {})])
        if value is not None or any(key in KEY_SCORER and KEY_SCORER[key] in (r.get("scoring") or {}) for r in ok):
            row[header] = value
    from mllm_guidance.eval.text_rendering import oneig_text_score

    text_score = oneig_text_score(records)
    if text_score is not None:
        row["Text score: OneIG-Bench formula (OCR)"] = round(text_score, 4)
        row["text images scored"] = sum("text_exact" in (r.get("metrics") or {}) for r in ok)
    from mllm_guidance.eval.geneval import geneval_table

    geneval = geneval_table(records)
    if geneval:
        row.update({f"GenEval {k}": v for k, v in geneval.items()})
    from mllm_guidance.eval.dpg_bench import dpg_table

    dpg = dpg_table(records)
    if dpg:
        row.update({f"DPG-Bench {k}": v for k, v in dpg.items()})
    failed_parts = [f.get("failed") for r in ok for f in ((r.get("scoring") or {}).get("layout-adherence") or {}).get("rounds") or []]
    if failed_parts:
        row["rounds failed by plan / render"] = f"{failed_parts.count('plan')} / {failed_parts.count('render')} of {len(failed_parts)}"
    row["MLLM calls/img"] = _mean([r.get("mllm_calls", 0) for r in ok])
    row["tokens/img"] = _mean([r.get("input_tokens", 0) + r.get("output_tokens", 0) for r in ok])
    row["generator s/img"] = _mean([r.get("generator_seconds", 0.0) for r in ok])
    row["rounds/img"] = _mean([r.get("rounds_used", 0) for r in ok])
    row["scorers"] = scorer_notes(records)
    row["warnings"] = " ".join(warnings_for(records)) or None
    return row


def scorer_notes(records: Sequence[dict[str, Any]]) -> str | None:
    """Every scorer that ran, in one cell: the judges by name (their settings are the judge
    column), the others with their models and options."""
    notes = [f"{name} (see judge)" for name in ("mllm", "mllm-reason") if _scoring(records, name)]
    for name in ("clipscore", "blip-vqa", "blip-clip", "text-rendering", "layout-adherence"):
        s = _settings(records, name)
        if s:
            extra = {"clipscore": f"complex rule {'on' if s.get('complex_rule') else 'off'}",
                     "blip-vqa": f"{s.get('questions')} questions, {s.get('image_size')} px",
                     "blip-clip": f"{s.get('captioner')} + {s.get('clip_model')}",
                     "text-rendering": f"confidence >= {s.get('min_confidence')}",
                     "layout-adherence": f"detections >= {s.get('threshold')}, found at IoU {s.get('found_iou')}"}[name]
            notes.append(f"{name}: {s.get('model') or s.get('recipe') or s.get('ocr')} ({extra})")
    return "; ".join(notes) or None


def warnings_for(records: Sequence[dict[str, Any]]) -> list[str]:
    out = []
    if (_settings(records, "blip-vqa") or {}).get("spacy_fallback"):
        out.append("warning: blip-vqa asked rule-based questions (spaCy's en_core_web_sm was missing), not T2I-CompBench's "
                   "spaCy noun chunks; install it or run with --require-spacy.")
    return out + _selfjudged_warnings(records)


def _selfjudged_warnings(records: Sequence[dict[str, Any]]) -> list[str]:
    guide = next((r.get("models", {}).get("mllm") for r in records if r.get("status") == "ok"), None)
    selfjudged = [name for name in ("mllm", "mllm-reason")
                  if guide and ((_scoring(records, name) or {}).get("settings") or {}).get("model_class") == guide]
    if not selfjudged:
        return []
    return [f"warning: the {' and '.join(selfjudged)} judge is the guide's own model ({guide}); the full method stops when "
            "this model is satisfied, so its scores favour the method over single-shot baselines: judge with another "
            "model (--judge)."]


def write_summary(out: Path, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    from mllm_guidance.store import RunStore

    row = summarize(records)
    store = RunStore(out)  # atomic writes, secrets masked, a full disk as one line
    store.write_text("summary.md", summary_markdown(row) + "\n")
    store.write_text("summary.csv", to_csv([row]))
    store.write_json("summary.json", row)
    from mllm_guidance.eval.summary_html import render_summary_html

    store.write_text("summary.html", render_summary_html(records))
    return row


def summary_markdown(row: dict[str, Any]) -> str:
    """The run's header lines (generator, guide, judge, scale, templates, scorers), its table, its warnings."""
    lines = [f"- {key}: {_fmt(row.get(key))}" for key in (*RUN_COLUMNS, "scorers")]
    table = {k: v for k, v in row.items() if k not in (*RUN_COLUMNS, "scorers", "warnings")
             and not k.startswith(("GenEval ", "DPG-Bench "))}
    out = "\n".join(lines) + "\n\n" + markdown([table])
    geneval = {k.removeprefix("GenEval "): v for k, v in row.items() if k.startswith("GenEval ")}
    if geneval:  # GenEval's own layout: the six tasks, then Overall (the mean of the tasks scored)
        out += "\n\nGenEval (djghosh13/geneval; Mask2Former through transformers)\n\n" + markdown(
            [{"Method": row.get("method"), **{k: "–" if v is None else v for k, v in geneval.items() if k != "images"}}])
    dpg = {k.removeprefix("DPG-Bench "): v for k, v in row.items() if k.startswith("DPG-Bench ")}
    if dpg:  # DPG-Bench's script's numbers: the score, then its L1 categories (x 100)
        answered = dpg.pop("vqa", None)
        out += (f"\n\nDPG-Bench (TencentQQGYLab/ELLA; questions answered by {answered})\n\n"
                + markdown([{"Method": row.get("method"), **{k: "–" if v is None else v for k, v in dpg.items() if k != "images"}}]))
    if row.get("warnings"):
        out += "\n\n" + row["warnings"]
    return out


def compare(dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    rows = []
    for d in dirs:
        path = Path(d) / "summary.json"
        if not path.exists():
            raise InputError(f"{d} has no summary.json; run mllm-guidance bench into it first")
        row = json.loads(path.read_text(encoding="utf-8"))
        rows.append({"run": str(d), **{k: row.get(k) for k in RUN_COLUMNS}, **row})
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    headers: list[str] = []
    for r in rows:
        headers += [h for h in r if h not in headers]
    headers = [h for h in headers if any(r.get(h) is not None for r in rows)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(r.get(h)) for h in headers) + " |" for r in rows]
    return "\n".join(lines)


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    names: list[str] = []
    for r in rows:
        names += [h for h in r if h not in names]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _settings(records: Sequence[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """A scorer's recorded settings (from any record it scored, a prompt it did not apply to included)."""
    return next(((r.get("scoring") or {}).get(name, {}).get("settings") for r in records
                 if ((r.get("scoring") or {}).get(name) or {}).get("settings")), None)


def _scoring(records: Sequence[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next(((r.get("scoring") or {}).get(name) for r in records if (r.get("scoring") or {}).get(name)), None)


# -- correlation with human ratings ------------------------------------------------------------


def correlate(records: Sequence[dict[str, Any]], ratings_csv: str | Path) -> list[dict[str, Any]]:
    """Kendall's tau-b and Spearman's rho of every metric against human ratings.

    The CSV has a ``rating`` column and a ``key`` column (the record key, e.g. ``rls300-007-0``)
    or an ``image`` column (the image file name)."""
    human = _ratings(Path(ratings_csv))
    out = []
    for key, header in [("guide", "guide score")] + metric_headers(records):
        xs, ys = [], []
        for r in records:
            rating = human.get(r["key"]) if r["key"] in human else human.get(Path(r.get("image", "")).name)
            value = r.get("final_score") if key == "guide" else (r.get("metrics") or {}).get(key)
            if rating is not None and value is not None:
                xs.append(float(value))
                ys.append(rating)
        if len(xs) >= 2:
            out.append({"metric": header, "n": len(xs), "kendall_tau": kendall_tau(xs, ys), "spearman_rho": spearman_rho(xs, ys)})
    if not out:
        raise InputError(f"no rated image of {ratings_csv} matches this run's records (columns: key or image, rating)")
    return out


def _ratings(path: Path) -> dict[str, float]:
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if not rows or "rating" not in rows[0] or not ({"key", "image"} & set(rows[0])):
        raise InputError(f"{path}: need a 'rating' column and a 'key' or 'image' column")
    out = {}
    for r in rows:
        name = r.get("key") or Path(r.get("image") or "").name
        try:
            out[name] = float(r["rating"])
        except (TypeError, ValueError):
            raise InputError(f"{path}: rating {r['rating']!r} of {name!r} is not a number") from None
    return out


def kendall_tau(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either ranking accounted for): ``scipy.stats.kendalltau``."""
    return _correlation("kendalltau", xs, ys)


def spearman_rho(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rho (average ranks for ties): ``scipy.stats.spearmanr``; NaN for a constant input."""
    return _correlation("spearmanr", xs, ys)


def _correlation(name: str, xs: Sequence[float], ys: Sequence[float]) -> float:
    try:
        from scipy import stats
    except ImportError as exc:
        raise BackendError(f"correlations need scipy: pip install 'mllm-guidance[eval]' ({exc})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant input: NaN, said by the value itself
        return float(getattr(stats, name)(list(xs), list(ys)).statistic)


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if not value.is_integer() else f"{value:.0f}"
    return str(value)
