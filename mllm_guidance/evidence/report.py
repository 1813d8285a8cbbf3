"""report.html: a finished run's rounds side by side, offline (images by relative path, inline
styles), with each round's boxes drawn on its image."""

from __future__ import annotations

import html
import json
from typing import Any

from mllm_guidance.draw import draw_layout
from mllm_guidance.layout import Layout
from mllm_guidance.state import GuidanceState
from mllm_guidance.store import RunStore

REPORT_FILE = "report.html"


def write_report(store: RunStore, state: GuidanceState, record: dict[str, Any]) -> None:
    """The overlays of the rounds with a layout, and the page."""
    for r in state.rounds:
        if r.layout is not None:
            overlay = draw_layout(store.load_image(r.image), r.layout)
            store.save_image(overlay, overlay_name(r.index))
    store.write_text(REPORT_FILE, render_html(record))


def overlay_name(index: int) -> str:
    return f"round-{index}-overlay.png"


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
.round.best{outline:3px solid #2f9e44}.round img{width:100%;border-radius:4px;display:block;margin-bottom:6px}
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
        imgs = f'<img src="{_e(r["image"]["path"])}" alt="round {r["index"]}">'
        if r.get("layout") is not None:
            imgs += f'<img src="{_e(overlay_name(r["index"]))}" alt="round {r["index"]} with boxes">'
        warnings = "".join(f'<div class="warn">⚠ {_e(w)}</div>' for w in r.get("layout_warnings", []))
        notes = "".join(f'<div class="warn">{_e(n)}</div>' for n in r.get("generator_notes", []))
        judged = (
            f"<p>{_score(r.get('score'))} {_e(r.get('reasoning'))}</p>" if r.get("reasoning") is not None or r.get("score") is not None else '<p class="muted">not judged</p>'
        )
        cards.append(
            f'<section class="round{" best" if r["index"] == best else ""}">'
            f'<h3>Round {r["index"]}{" · best" if r["index"] == best else ""}</h3>{imgs}'
            f'{judged}<p class="muted">layout from <b>{_e(r["layout_source"])}</b>: {_e(r.get("layout_reasoning"))}</p>'
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
<h2>Rounds</h2><div class="rounds">{''.join(cards)}</div>
{f'<h2>Self-correction</h2><table><tr><th>#</th><th>change</th><th>reasoning</th></tr>{corrections}</table>' if corrections else ''}
<h2>MLLM calls</h2>{calls or '<p class="muted">none</p>'}
<details><summary>Configuration and versions</summary><pre>{_e(json.dumps({'config': record['config'], 'versions': record['versions'], 'seed': record['seed']}, indent=1))}</pre></details>
</main></body></html>
"""
