"""report.html: a finished run's rounds side by side, offline (images by relative path, inline
styles and SVG): each round's boxes drawn over its image as SVG (no extra image files to encode),
and the score of every round as a small chart."""

from __future__ import annotations

import html
import json
from typing import Any

from mllm_guidance.draw import PALETTE
from mllm_guidance.layout import Layout
from mllm_guidance.state import GuidanceState
from mllm_guidance.store import RunStore

REPORT_FILE = "report.html"


def write_report(store: RunStore, state: GuidanceState, record: dict[str, Any]) -> None:
    store.write_text(REPORT_FILE, render_html(record))


def boxes_svg(layout: dict[str, Any] | None, width: int, height: int) -> str:
    """The layout's boxes and labels as an SVG laid over an image of ``width`` x ``height``
    (drawn in the image's own pixels, so the labels keep their proportions at any display size)."""
    if not layout:
        return ""
    objects = Layout.model_validate(layout).objects
    font = max(10, round(min(width, height) / 28))
    stroke = max(2, round(min(width, height) / 200))
    shapes = []
    for i, o in enumerate(objects):
        r, g, b = PALETTE[i % len(PALETTE)]
        x, y = o.box.x1 * width, o.box.y1 * height
        w, h = (o.box.x2 - o.box.x1) * width, (o.box.y2 - o.box.y1) * height
        label = o.name if len(o.name) <= 40 else o.name[:37] + "..."
        ty = y + font + stroke if y + font * 1.4 <= height else y + h - stroke
        shapes.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" fill="rgb({r},{g},{b})" fill-opacity="0.12" '
            f'stroke="rgb({r},{g},{b})" stroke-width="{stroke}"/>'
            f'<text x="{x + stroke * 2:.1f}" y="{ty:.1f}" font-size="{font}" fill="#fff" stroke="rgb({r},{g},{b})" '
            f'stroke-width="{font / 4:.1f}" paint-order="stroke">{_e(label)}</text>'
        )
    return (f'<svg class="boxes" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" '
            f'aria-label="boxes">{"".join(shapes)}</svg>')


def mask_svg(repair: dict[str, Any] | None, width: int, height: int, key: Any = 0) -> str:
    """A repaired round's mask over its image: everything outside the mask dimmed, the mask outlined."""
    if not repair or not repair.get("repaired") or not repair.get("boxes"):
        return ""
    rects = "".join(f'<rect x="{b[0] * width:.1f}" y="{b[1] * height:.1f}" width="{(b[2] - b[0]) * width:.1f}" '
                    f'height="{(b[3] - b[1]) * height:.1f}"/>' for b in repair["boxes"])
    stroke = max(2, round(min(width, height) / 200))
    return (f'<svg class="mask" viewBox="0 0 {width} {height}" preserveAspectRatio="none" role="img" aria-label="repair mask">'
            f'<defs><mask id="repair-{key}"><rect width="{width}" height="{height}" fill="#fff"/><g fill="#000">{rects}</g></mask></defs>'
            f'<rect width="{width}" height="{height}" fill="#000" fill-opacity="0.45" mask="url(#repair-{key})"/>'
            f'<g fill="none" stroke="#f0f" stroke-width="{stroke}" stroke-dasharray="{stroke * 3}">{rects}</g></svg>')


def _repair_line(repair: dict[str, Any] | None) -> str:
    if not repair:
        return ""
    changed = "; ".join(repair.get("changed") or []) or "nothing"
    if repair.get("repaired"):
        return (f'<p class="repair">repaired round {_e(repair.get("base_round"))} inside the mask '
                f'({repair.get("share", 0):.0%} of the image) · changed: {_e(changed)}</p>')
    return f'<p class="repair muted">not repaired: {_e(repair.get("reason"))} · changed: {_e(changed)}</p>'


def _candidates_line(r: dict[str, Any]) -> str:
    candidates = r.get("candidates") or []
    if not candidates:
        return ""
    cells = "".join(f'<td{" class=chosen" if c.get("chosen") else ""}><img src="{_e(c["image"]["path"])}" alt="seed {c["seed"]}">'
                    f'<br>seed {c["seed"]} · {c["score"] if c.get("score") is not None else "–"}</td>' for c in candidates)
    return f'<p class="muted">{len(candidates)} candidates, picked by {_e(r.get("verifier"))}:</p><table class="cands"><tr>{cells}</tr></table>'


def score_chart(rounds: list[dict[str, Any]], best: int | None) -> str:
    """Each round's score (1..5) as a line over the rounds, the best round marked; unjudged rounds
    are gaps."""
    scored = [(r["index"], r.get("score")) for r in rounds]
    if not any(s is not None for _, s in scored):
        return ""
    w, h, pad = max(160, 60 * len(scored)), 140, 28
    step = (w - 2 * pad) / max(1, len(scored) - 1)

    def at(i: int, s: int) -> tuple[float, float]:
        return pad + i * step, h - pad - (s - 1) * (h - 2 * pad) / 4

    grid = "".join(f'<line x1="{pad}" x2="{w - pad}" y1="{at(0, s)[1]:.1f}" y2="{at(0, s)[1]:.1f}" stroke="#ddd"/>'
                   f'<text x="{pad - 8}" y="{at(0, s)[1] + 4:.1f}" font-size="11" text-anchor="end" fill="#666">{s}</text>'
                   for s in range(1, 6))
    points = [(i, at(i, s)) for i, s in scored if s is not None]
    line = " ".join(f"{x:.1f},{y:.1f}" for _, (x, y) in points)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{7 if i == best else 4}" fill="{"#2f9e44" if i == best else "#1f2933"}">'
                   f"<title>round {i}: {s}</title></circle>" for (i, (x, y)), (_, s) in zip(points, [p for p in scored if p[1] is not None], strict=True))
    labels = "".join(f'<text x="{at(i, 1)[0]:.1f}" y="{h - 8}" font-size="11" text-anchor="middle" fill="#666">{i}</text>'
                     for i, _ in scored)
    return (f'<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="score per round">'
            f'{grid}<polyline points="{line}" fill="none" stroke="#1f2933" stroke-width="2"/>{dots}{labels}</svg>')


# -- HTML -------------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f5f3;color:#222}
header{background:#1f2933;color:#fff;padding:18px 28px}header h1{margin:0 0 6px;font-size:20px}
header p{margin:2px 0;color:#cbd2d9}main{padding:20px 28px}
.summary{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}
.summary img{width:320px;border-radius:6px;box-shadow:0 1px 4px #0003}
table{border-collapse:collapse;font-size:13px}td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
.rounds{display:flex;gap:16px;overflow-x:auto;padding-bottom:12px}
.round{flex:0 0 340px;background:#fff;border-radius:8px;padding:12px;box-shadow:0 1px 3px #0002}
.round.best{outline:3px solid #2f9e44}.frame{position:relative;margin-bottom:6px}.frame img{width:100%;border-radius:4px;display:block}
.frame svg.boxes,.frame svg.mask{position:absolute;inset:0;width:100%;height:100%}.frame.plain svg.boxes{display:none}
.frame.nomask svg.mask{display:none}.repair{font-size:13px;color:#862e9c}.cands img{width:60px;display:block}.cands td.chosen{outline:2px solid #2f9e44}
label.toggle{font-size:13px;color:#555}svg.chart{display:block;margin:4px 0 8px}
.score{display:inline-block;min-width:28px;text-align:center;border-radius:12px;padding:1px 8px;color:#fff;font-weight:600}
.s1{background:#c92a2a}.s2{background:#e8590c}.s3{background:#f59f00}.s4{background:#74b816}.s5{background:#2f9e44}.sn{background:#868e96}
.muted{color:#666;font-size:13px}.warn{color:#b35c00;font-size:12px}pre{white-space:pre-wrap;font-size:12px;background:#f1f3f5;padding:8px;border-radius:4px}
details{margin:8px 0}h2{font-size:17px;margin:22px 0 10px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _score(score: Any) -> str:
    if score is None:
        return '<span class="score sn">–</span>'
    return f'<span class="score s{int(score)}">{int(score)}</span>'


def _cost(value: Any) -> str:
    return "unknown (no price for this model)" if value is None else f"${value:.4f}"


def _layout_table(layout: dict[str, Any] | None) -> str:
    if layout is None:
        return '<p class="muted">no layout (plain text-to-image)</p>'
    objects = Layout.model_validate(layout).objects
    if not objects:
        return '<p class="muted">empty layout</p>'
    rows = "".join(f"<tr><td>{_e(o.name)}</td><td>{_e(o.box)}</td></tr>" for o in objects)
    return f"<table><tr><th>object</th><th>[x1, y1, x2, y2]</th></tr>{rows}</table>"


def render_html(record: dict[str, Any]) -> str:
    best = record.get("best_round")
    cards = []
    for r in record["rounds"]:
        image = r["image"]
        imgs = (f'<div class="frame"><img src="{_e(image["path"])}" alt="round {r["index"]}">'
                f'{mask_svg(r.get("repair"), image["width"], image["height"], r["index"])}'
                f'{boxes_svg(r.get("layout"), image["width"], image["height"])}</div>')
        warnings = "".join(f'<div class="warn">⚠ {_e(w)}</div>' for w in r.get("layout_warnings", []))
        notes = "".join(f'<div class="warn">{_e(n)}</div>' for n in r.get("generator_notes", []))
        judged = (
            f"<p>{_score(r.get('score'))} {_e(r.get('reasoning'))}</p>" if r.get("reasoning") is not None or r.get("score") is not None else '<p class="muted">not judged</p>'
        )
        cards.append(
            f'<section class="round{" best" if r["index"] == best else ""}">'
            f'<h3>Round {r["index"]}{" · best" if r["index"] == best else ""}</h3>{imgs}'
            f'{judged}{_repair_line(r.get("repair"))}{_candidates_line(r)}<p class="muted">layout from <b>{_e(r["layout_source"])}</b>: {_e(r.get("layout_reasoning"))}</p>'
            f'{_layout_table(r.get("layout"))}{warnings}{notes}<p class="muted">seed {r["seed"]} · {r["seconds"]:.2f}s</p></section>'
        )
    corrections = "".join(
        f"<tr><td>{c['index']}</td><td>{_e(c['diff'])}</td><td>{_e(c['reasoning'])}</td></tr>"
        for c in record["corrections"]
    )
    failures = "".join(f"<li>{_e(f['step'])} (round {f['round']}, {f['attempts']} attempts): {_e(f['error'])}</li>" for f in record["failures"])
    u = record["usage"]
    calls = "".join(
        f"<details><summary>{_e(c.get('step'))} · round {c.get('round')} · attempt {c.get('attempt')}"
        f"{' · <b>unreadable</b>' if c.get('error') else ''}</summary><pre>{_e(json.dumps(c.get('request'), indent=1, ensure_ascii=False))}</pre>"
        f"<p>Reply:</p><pre>{_e(c.get('reply') or json.dumps(c.get('tool_calls')))}</pre></details>"
        for c in record["calls"]
    )
    final = record.get("final_image") or {}
    best_score = record.get("score")
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>mllm-guidance · {_e(record['prompt'])}</title><style>{_CSS}</style></head><body>
<header><h1>{_e(record['prompt'])}</h1>
<p>mode {_e(record['mode'])} · stop: {_e(record['stop_reason'])} · templates {_e(record['template_set']['version'])}</p>
<p>MLLM {_e(record['models'].get('mllm', '?'))} · generator {_e(record['models'].get('generator', '?'))}</p></header>
<main><div class="summary"><img src="{_e(final.get('path', ''))}" alt="final image">
<div><p>Best: round {_e(best)} {_score(best_score)}</p>
<table><tr><td>MLLM calls</td><td>{u['mllm_calls']}</td></tr><tr><td>generator calls</td><td>{u['generator_calls']}</td></tr>
<tr><td>tokens in / out</td><td>{u['input_tokens']} / {u['output_tokens']}</td></tr>
<tr><td>MLLM seconds</td><td>{u['mllm_seconds']:.2f}</td></tr><tr><td>generator seconds</td><td>{u['generator_seconds']:.2f}</td></tr>
<tr><td>estimated MLLM cost</td><td>{_cost(u.get('estimated_cost_usd'))}</td></tr></table>
{f'<h2>Unreadable answers</h2><ul>{failures}</ul>' if failures else ''}</div></div>
<h2>Rounds</h2>{score_chart(record["rounds"], best)}
<label class="toggle"><input type="checkbox" checked onchange="document.querySelectorAll('.frame').forEach(f=>f.classList.toggle('plain',!this.checked))"> boxes</label>
<label class="toggle"><input type="checkbox" checked onchange="document.querySelectorAll('.frame').forEach(f=>f.classList.toggle('nomask',!this.checked))"> repair masks</label>
<div class="rounds">{''.join(cards)}</div>
{f'<h2>Self-correction</h2><table><tr><th>#</th><th>change</th><th>reasoning</th></tr>{corrections}</table>' if corrections else ''}
<h2>MLLM calls</h2>{calls or '<p class="muted">none</p>'}
<details><summary>Configuration and versions</summary><pre>{_e(json.dumps({'config': record['config'], 'versions': record['versions'], 'seed': record['seed']}, indent=1))}</pre></details>
</main></body></html>
"""
