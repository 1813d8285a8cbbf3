"""report.html: a finished run's rounds side by side, offline (template ``pages/report.html``):
each round's boxes drawn over its image as SVG (no extra image files to encode), the score of
every round as a chart, a repaired round's mask and changed objects, the candidates a verifier
ranked, the layout rules as information (they are the prompts' advice to the MLLM, not defects of
an image), every MLLM call. Here: the geometry; the template lays it out."""

from __future__ import annotations

import json
from typing import Any

from mllm_guidance.draw import PALETTE
from mllm_guidance.layout import Layout
from mllm_guidance.pages import macro, render
from mllm_guidance.state import GuidanceState
from mllm_guidance.store import RunStore

REPORT_FILE = "report.html"
#: Rough width of one label character, in font sizes (system sans-serif): labels are cut to fit.
CHAR_WIDTH = 0.56


def write_report(store: RunStore, state: GuidanceState, record: dict[str, Any]) -> None:
    store.write_text(REPORT_FILE, render_html(record))


def box_geometry(layout: dict[str, Any] | None, width: int, height: int) -> dict[str, Any] | None:
    """Where each box and its label go over an image of ``width`` x ``height`` (in the image's own
    pixels, so labels keep their proportions at any display size). A label is cut to what fits in
    its box and inside the image, with the full name as the tooltip."""
    if not layout:
        return None
    font = max(10, round(min(width, height) / 28))
    stroke = max(2, round(min(width, height) / 200))
    shapes = []
    for i, o in enumerate(Layout.model_validate(layout).objects):
        r, g, b = PALETTE[i % len(PALETTE)]
        x, y = o.box.x1 * width, o.box.y1 * height
        w, h = (o.box.x2 - o.box.x1) * width, (o.box.y2 - o.box.y1) * height
        room = max(w, font * 3) - stroke * 4  # at least a few letters for a sliver of a box
        room = min(room, width - x - stroke * 2)
        fits = max(1, int(room / (font * CHAR_WIDTH)))
        label = o.name if len(o.name) <= fits else o.name[:max(1, fits - 1)].rstrip() + "…"
        shapes.append({"x": x, "y": y, "w": w, "h": h, "color": f"rgb({r},{g},{b})", "name": o.name, "label": label,
                       "tx": x + stroke * 2, "ty": y + font + stroke if y + font * 1.4 <= height else y + h - stroke})
    return {"width": width, "height": height, "font": font, "stroke": stroke, "shapes": shapes}


def chart_geometry(rounds: list[dict[str, Any]], best: int | None) -> dict[str, Any] | None:
    """Each round's score (1..5) over the rounds, the best round marked; unjudged rounds are gaps."""
    scored = [(r["index"], r.get("score")) for r in rounds]
    if not any(s is not None for _, s in scored):
        return None
    w, h, pad = max(420, 90 * len(scored)), 170, 34
    step = (w - 2 * pad) / max(1, len(scored) - 1)

    def at(i: int, s: float) -> tuple[float, float]:
        return pad + i * step if len(scored) > 1 else w / 2, h - pad - (s - 1) * (h - 2 * pad) / 4

    points = [{"round": i, "score": s, "x": at(n, s)[0], "y": at(n, s)[1], "best": i == best}
              for n, (i, s) in enumerate(scored) if s is not None]
    return {"w": w, "h": h, "pad": pad, "grid": [{"score": s, "y": at(0, s)[1]} for s in range(1, 6)],
            "points": points, "line": " ".join(f"{p['x']:.1f},{p['y']:.1f}" for p in points),
            "labels": [{"round": i, "x": at(n, 1)[0]} for n, (i, _) in enumerate(scored)]}


def mask_geometry(repair: dict[str, Any] | None, width: int, height: int, key: Any = 0) -> dict[str, Any] | None:
    """A repaired round's mask over its image (the rest dimmed, the mask outlined); None when the
    round was not repaired."""
    if not repair or not repair.get("repaired") or not repair.get("boxes"):
        return None
    rects = [{"x": b[0] * width, "y": b[1] * height, "w": (b[2] - b[0]) * width, "h": (b[3] - b[1]) * height}
             for b in repair["boxes"]]
    return {"width": width, "height": height, "key": key, "rects": rects, "stroke": max(2, round(min(width, height) / 200))}


def boxes_svg(layout: dict[str, Any] | None, width: int, height: int) -> str:
    """The layout's boxes and labels as an SVG to lay over an image ("" without a layout)."""
    return macro("_svg.html", "boxes", box_geometry(layout, width, height))


def score_chart(rounds: list[dict[str, Any]], best: int | None) -> str:
    """The score chart's SVG ("" when nothing was judged)."""
    return macro("_svg.html", "score_chart", chart_geometry(rounds, best))


def render_html(record: dict[str, Any]) -> str:
    best = record.get("best_round")
    rounds = []
    for r in record["rounds"]:
        layout = r.get("layout")
        rounds.append({
            "index": r["index"], "best": r["index"] == best, "image_path": r["image"]["path"],
            "boxes": box_geometry(layout, r["image"]["width"], r["image"]["height"]),
            "judged": r.get("reasoning") is not None or r.get("score") is not None,
            "score": r.get("score"), "reasoning": r.get("reasoning"), "layout_source": r["layout_source"],
            "layout_reasoning": r.get("layout_reasoning"),
            "layout": None if layout is None else Layout.model_validate(layout).objects,
            "rule_notes": r.get("layout_warnings", []), "generator_notes": r.get("generator_notes", []),
            "mask": mask_geometry(r.get("repair"), r["image"]["width"], r["image"]["height"], r["index"]),
            "repair": r.get("repair"), "candidates": r.get("candidates") or [], "verifier": r.get("verifier"),
            "seed": r["seed"], "seconds": r["seconds"],
        })
    calls = [{"step": c.get("step"), "round": c.get("round"), "attempt": c.get("attempt"), "error": c.get("error"),
              "request": json.dumps(c.get("request"), indent=1, ensure_ascii=False),
              "reply": c.get("reply") or json.dumps(c.get("tool_calls"))} for c in record["calls"]]
    u = record["usage"]
    cost = u.get("estimated_cost_usd")
    settings = json.dumps({"config": record["config"], "settings": record.get("settings"), "versions": record["versions"], "seed": record["seed"]}, indent=1)
    return render("report.html", r=record, u=u, rounds=rounds, calls=calls, settings=settings,
                  chart=chart_geometry(record["rounds"], best), final_path=(record.get("final_image") or {}).get("path", ""),
                  cost="unknown (no price for this model)" if cost is None else f"${cost:.4f}",
                  sketch=record["models"].get("generator_spec") == "sketch" or record["models"].get("generator") == "sketch")
