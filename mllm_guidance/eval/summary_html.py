"""summary.html: a benchmark output directory as pictures, offline (inline SVG, images by relative
path): the mean of every metric with its 95% interval, the distribution of the guide's final scores,
the rounds each image used, the cost per image, and the lowest-scored items with their images."""

from __future__ import annotations

import html
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from mllm_guidance.eval.tables import metric_headers, run_info

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f5f3;color:#222}
header{background:#1f2933;color:#fff;padding:16px 26px}header h1{margin:0 0 4px;font-size:19px}header p{margin:2px 0;color:#cbd2d9}
main{padding:18px 26px}h2{font-size:16px;margin:22px 0 8px}.row{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}
.items{display:flex;gap:12px;flex-wrap:wrap}.item{background:#fff;border-radius:6px;padding:8px;width:200px;box-shadow:0 1px 3px #0002;font-size:12px}
.item img{width:100%;border-radius:4px}.muted{color:#666}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def interval(values: Sequence[float]) -> tuple[float, float, float] | None:
    """Mean and its 95% interval (normal approximation; the mean alone for one value)."""
    if not values:
        return None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    half = 1.96 * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def metric_bars(rows: list[tuple[str, tuple[float, float, float]]]) -> str:
    """Horizontal bars on a 0..1 axis, one per metric, with the interval as a whisker."""
    if not rows:
        return '<p class="muted">no metrics</p>'
    label, width, row_h = 260, 320, 26
    h = row_h * len(rows) + 24
    parts = []
    for i, (name, (mean, low, high)) in enumerate(rows):
        y = 8 + i * row_h
        x = lambda v: label + max(0.0, min(1.0, v)) * width  # noqa: E731
        parts.append(f'<text x="{label - 8}" y="{y + 14}" font-size="12" text-anchor="end">{_e(name)}</text>'
                     f'<rect x="{label}" y="{y + 3}" width="{x(mean) - label:.1f}" height="14" fill="#4c6ef5"/>'
                     f'<line x1="{x(low):.1f}" x2="{x(high):.1f}" y1="{y + 10}" y2="{y + 10}" stroke="#1f2933" stroke-width="2"/>'
                     f'<text x="{x(high) + 6:.1f}" y="{y + 14}" font-size="11" fill="#444">{mean:.3f}</text>')
    axis = "".join(f'<text x="{label + t * width:.0f}" y="{h - 4}" font-size="10" text-anchor="middle" fill="#888">{t:g}</text>'
                   for t in (0, 0.25, 0.5, 0.75, 1))
    return f'<svg viewBox="0 0 {label + width + 60} {h}" width="{label + width + 60}" height="{h}" role="img" aria-label="metrics">{"".join(parts)}{axis}</svg>'


def histogram(counts: dict[Any, int], title: str) -> str:
    """Vertical bars of counts per category, in the order given."""
    if not counts or not any(counts.values()):
        return f'<p class="muted">no {html.escape(title)}</p>'
    w, h, pad, bar = 40 * len(counts) + 40, 150, 22, 28
    top = max(counts.values())
    parts = []
    for i, (key, n) in enumerate(counts.items()):
        bh = (h - 2 * pad) * n / top
        x = 30 + i * 40
        parts.append(f'<rect x="{x}" y="{h - pad - bh:.1f}" width="{bar}" height="{bh:.1f}" fill="#2f9e44"><title>{_e(key)}: {n}</title></rect>'
                     f'<text x="{x + bar / 2}" y="{h - 6}" font-size="11" text-anchor="middle">{_e(key)}</text>'
                     f'<text x="{x + bar / 2}" y="{h - pad - bh - 4:.1f}" font-size="10" text-anchor="middle" fill="#555">{n}</text>')
    return f'<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{_e(title)}">{"".join(parts)}</svg>'


def render_summary_html(records: Sequence[dict[str, Any]], lowest: int = 8) -> str:
    ok = [r for r in records if r.get("status") == "ok"]
    failed = [r for r in records if r.get("status") != "ok"]
    info = run_info(records)
    first = records[0] if records else {}
    rows = []
    guide = [r["final_score"] / 5 for r in ok if r.get("final_score") is not None]
    if guide and (ci := interval(guide)):
        rows.append(("guide score (score/5)", ci))
    for key, header in metric_headers(records):
        values = [float(r["metrics"][key]) for r in ok if isinstance((r.get("metrics") or {}).get(key), (int, float))]
        if values and all(0 <= v <= 1 for v in values) and (ci := interval(values)):
            rows.append((header, ci))
    scores = Counter(r.get("final_score") for r in ok if r.get("final_score") is not None)
    rounds = Counter(r.get("rounds_used", 0) for r in ok)
    cost = [("MLLM calls / image", [r.get("mllm_calls", 0) for r in ok]),
            ("tokens / image", [r.get("input_tokens", 0) + r.get("output_tokens", 0) for r in ok]),
            ("generator seconds / image", [r.get("generator_seconds", 0.0) for r in ok])]
    cost_rows = "".join(f"<tr><td>{_e(name)}</td><td>{statistics.fmean(v):.2f}</td></tr>" for name, v in cost if v)
    worst = sorted((r for r in ok if r.get("final_score") is not None), key=lambda r: (r["final_score"], str(r.get("key", ""))))[:lowest]
    cards = "".join(
        f'<div class="item"><img src="{_e(r.get("image"))}" alt="{_e(r.get("key"))}"><div><b>{_e(r.get("final_score"))}/5</b> '
        f'· {_e(r.get("rounds_used"))} round(s)</div><div class="muted">{_e(r.get("prompt"))}</div></div>' for r in worst)
    failures = "".join(f"<tr><td>{_e(r.get('key'))}</td><td>{_e(r.get('error'))}</td></tr>" for r in failed)
    head = " · ".join(f"{k} {_e(v)}" for k, v in info.items() if v is not None)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>benchmark · {_e(first.get('dataset'))}</title>
<style>{_CSS}</style></head><body><header><h1>{_e(first.get('dataset'))} · method {_e(first.get('method'))}</h1>
<p>{head}</p><p>{len(ok)} image(s), {len(failed)} failed</p></header><main>
<h2>Metrics (mean, 95% interval)</h2>{metric_bars(rows)}
<div class="row"><div><h2>Guide's final scores</h2>{histogram({s: scores.get(s, 0) for s in range(1, 6)}, "scores")}</div>
<div><h2>Rounds used</h2>{histogram(dict(sorted(rounds.items())), "rounds")}</div>
<div><h2>Cost per image</h2><table>{cost_rows}</table></div></div>
<h2>Lowest-scored items</h2><div class="items">{cards or '<p class="muted">none scored</p>'}</div>
{f'<h2>Failed items</h2><table><tr><th>item</th><th>error</th></tr>{failures}</table>' if failures else ''}
</main></body></html>
"""
