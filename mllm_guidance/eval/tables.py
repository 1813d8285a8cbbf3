"""Result tables: a summary shaped like the thesis's Table 6.3 (plus cost), side-by-side
comparisons of runs, and the correlation of every metric with human ratings (Table 6.2)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mllm_guidance.errors import InputError

#: Metric columns, in order, with the header that states their normalization.
METRICS = [
    ("mllm", "MLLM judge (mean score/5)"),
    ("clipscore_cos", "CLIPScore (raw cosine)"),
    ("clipscore", "CLIPScore (2.5·max(cos,0), Hessel et al.)"),
    ("blip_vqa", "BLIP-VQA"),
    ("blip_clip", "BLIP-CLIP"),
]


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One summary row for a run directory's records."""
    ok = [r for r in records if r.get("status") == "ok"]
    first = records[0] if records else {}
    row: dict[str, Any] = {
        "method": first.get("method"), "dataset": first.get("dataset"), "images": len(ok),
        "failed": len(records) - len(ok),
        "guide score (mean score/5)": _mean([r["final_score"] / 5 for r in ok if r.get("final_score") is not None]),
    }
    for key, header in METRICS:
        row[header] = _mean([r["metrics"][key] for r in ok if key in (r.get("metrics") or {})])
    row["MLLM calls/img"] = _mean([r.get("mllm_calls", 0) for r in ok])
    row["tokens/img"] = _mean([r.get("input_tokens", 0) + r.get("output_tokens", 0) for r in ok])
    row["generator s/img"] = _mean([r.get("generator_seconds", 0.0) for r in ok])
    row["rounds/img"] = _mean([r.get("rounds_used", 0) for r in ok])
    return row


def write_summary(out: Path, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    row = summarize(records)
    (out / "summary.md").write_text(markdown([row]) + "\n", encoding="utf-8")
    (out / "summary.csv").write_text(to_csv([row]), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(row, indent=2) + "\n", encoding="utf-8")
    return row


def compare(dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    rows = []
    for d in dirs:
        path = Path(d) / "summary.json"
        if not path.exists():
            raise InputError(f"{d} has no summary.json; run mllm-guidance bench into it first")
        rows.append({"run": str(d), **json.loads(path.read_text(encoding="utf-8"))})
    return rows


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    headers = [h for h in rows[0] if any(r.get(h) is not None for r in rows)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_fmt(r.get(h)) for h in headers) + " |" for r in rows]
    return "\n".join(lines)


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


# -- correlation with human ratings ------------------------------------------------------------


def correlate(records: Sequence[dict[str, Any]], ratings_csv: str | Path) -> list[dict[str, Any]]:
    """Kendall's tau-b and Spearman's rho of every metric against human ratings.

    The CSV has a ``rating`` column and a ``key`` column (the record key, e.g. ``rls300-007-0``)
    or an ``image`` column (the image file name)."""
    human = _ratings(Path(ratings_csv))
    out = []
    for key, header in [("guide", "guide score")] + METRICS:
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
    """Kendall's tau-b (accounts for ties in either ranking)."""
    n = len(xs)
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = xs[i] - xs[j], ys[i] - ys[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denominator if denominator else float("nan")


def spearman_rho(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of average ranks (handles ties)."""
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    sy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return cov / (sx * sy) if sx and sy else float("nan")


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if not value.is_integer() else f"{value:.0f}"
    return str(value)
