"""summary.html: a benchmark output directory as pictures, offline (template
``pages/summary.html``): the mean of every metric with its 95% interval, each on its own scale; the
distribution of the guide's final scores; the rounds each image used; the cost per image; the
lowest-scored items with their images (by the independent judge when there is one, since that is
the point of a benchmark). Here: the numbers and geometry; the template lays them out."""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from mllm_guidance.eval.tables import metric_headers, run_info
from mllm_guidance.pages import render

#: Resamples of the bootstrap interval; seeded, so a summary is the same every time it is written.
RESAMPLES = 2000
#: Axis ends a metric is drawn against: the smallest that holds all its values.
SCALES = (1.0, 2.5, 5.0, 10.0, 100.0)


def interval(values: Sequence[float], resamples: int = RESAMPLES) -> tuple[float, float, float] | None:
    """Mean and its 95% percentile-bootstrap interval (seeded; the mean alone for one value). A
    bootstrap, not a normal approximation: judge scores are few-valued and bounded, and the
    normal interval runs past 0 and 1 at small n."""
    if not values:
        return None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    rng, n = random.Random(0), len(values)
    means = sorted(math.fsum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return mean, means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def bar_rows(rows: list[tuple[str, tuple[float, float, float], list[float]]]) -> list[dict[str, Any]]:
    """One bar per metric on its own axis (0..1 for shares, 0..2.5 for Hessel's CLIPScore, 0..5 for a raw
    judge...), so no metric disappears off a shared 0..1 axis."""
    label_w, bar_w = 300, 320
    out = []
    for name, (mean, low, high), values in rows:
        top = max([high, *values])
        hi = next((s for s in SCALES if top <= s), math.ceil(top))
        lo = min(0.0, math.floor(min([low, *values])))
        x = lambda v: label_w + (v - lo) / (hi - lo) * bar_w  # noqa: E731
        out.append({"name": name, "short": name if len(name) <= 44 else name[:43] + "…", "label_w": label_w, "bar_w": bar_w,
                    "total_w": label_w + bar_w + 70, "mean_w": x(mean) - label_w, "low_x": x(low), "high_x": x(high),
                    "value": f"{mean:.3f}", "lo": f"{lo:g}", "hi": f"{hi:g}"})
    return out


def histogram(counts: dict[Any, int]) -> dict[str, Any] | None:
    """Bar positions for counts per category, in the order given."""
    if not counts or not any(counts.values()):
        return None
    h, pad, bar = 150, 22, 28
    top = max(counts.values())
    bars = [{"key": key, "n": n, "x": 30 + i * 40, "bh": (h - 2 * pad) * n / top, "y": h - pad - (h - 2 * pad) * n / top}
            for i, (key, n) in enumerate(counts.items())]
    return {"w": 40 * len(counts) + 40, "h": h, "bar": bar, "bars": bars}


def _number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def render_summary_html(records: Sequence[dict[str, Any]], lowest: int = 8) -> str:
    ok = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") != "ok"]
    first = records[0] if records else {}
    rows = []
    guide = [r["final_score"] / 5 for r in ok if r.get("final_score") is not None]
    if guide and (ci := interval(guide)):
        rows.append(("guide score (score/5)", ci, guide))
    for key, header in metric_headers(records):
        values = [float(r["metrics"][key]) for r in ok if isinstance((r.get("metrics") or {}).get(key), (int, float))]
        if values and (ci := interval(values)):
            rows.append((header, ci, values))
    cost = [(name, _number(statistics.fmean(v), digits)) for name, v, digits in (
        ("MLLM calls / image", [r.get("mllm_calls", 0) for r in ok], 1),
        ("tokens / image", [r.get("input_tokens", 0) + r.get("output_tokens", 0) for r in ok], 0),
        ("generator seconds / image", [r.get("generator_seconds", 0.0) for r in ok], 2)) if v]
    by_judge = any(isinstance((r.get("metrics") or {}).get("mllm"), (int, float)) for r in ok)
    if by_judge:
        scored = [(r["metrics"]["mllm"], f"judge {r['metrics']['mllm']:.2f}", r) for r in ok
                  if isinstance((r.get("metrics") or {}).get("mllm"), (int, float))]
    else:
        scored = [(r["final_score"], f"{r['final_score']}/5", r) for r in ok if r.get("final_score") is not None]
    worst = sorted(scored, key=lambda t: (t[0], str(t[2].get("key", ""))))[:lowest]
    return render(
        "summary.html", dataset=first.get("dataset"), method=first.get("method"), ok=len(ok), failed=failed,
        info=[(k, v) for k, v in run_info(records).items() if v is not None], bars=bar_rows(rows),
        scores=histogram({s: Counter(r.get("final_score") for r in ok).get(s, 0) for s in range(1, 6)}),
        rounds=histogram(dict(sorted(Counter(r.get("rounds_used", 0) for r in ok).items()))), cost=cost,
        by_judge=by_judge, lowest=[{"image": r.get("image"), "key": r.get("key"), "score": label, "rounds": r.get("rounds_used"),
                                    "prompt": r.get("prompt")} for _, label, r in worst],
    )
