"""Tracing: LangSmith without image bytes, and a terminal view of a run's trace.

LangSmith tracing works by its standard environment variables (``LANGSMITH_TRACING=true``,
``LANGSMITH_API_KEY``, optional ``LANGSMITH_PROJECT`` and ``LANGSMITH_ENDPOINT``;
``LANGSMITH_OTEL_ENABLED=true`` sends OpenTelemetry spans instead). The MLLM steps send images
as base64 content blocks; when tracing is on, runs use a LangSmith client whose ``hide_inputs`` /
``hide_outputs`` replace every image payload with a short placeholder and mask every secret
(``redact``), so traces stay small and carry no image data and no keys. Runs are tagged ``mllm-guidance`` and ``mode:...`` and carry the mode, K,
models, template-set version and thread id as metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_IMAGE_PREFIXES = ("iVBOR", "/9j/", "R0lGOD", "UklGR", "data:image/")


def strip_images(value: Any) -> Any:
    """A copy of a trace payload with image bytes and base64 replaced by placeholders."""
    if isinstance(value, dict):
        if value.get("type") in ("image", "image_url", "input_image") or "base64" in value or "inlineData" in value:
            out = {}
            for key, item in value.items():
                if key in ("base64", "data", "url", "image_url", "inlineData") and _looks_like_image(item):
                    out[key] = f"<image omitted: {_size(item)} characters>"
                else:
                    out[key] = strip_images(item)
            return out
        return {key: strip_images(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strip_images(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes omitted>"
    if isinstance(value, str) and len(value) > 256 and value.startswith(_IMAGE_PREFIXES):
        return f"<image omitted: {len(value)} characters>"
    return value


def _looks_like_image(item: Any) -> bool:
    if isinstance(item, dict):
        return any(_looks_like_image(v) for v in item.values())
    return isinstance(item, (bytes, bytearray)) or (isinstance(item, str) and (len(item) > 256 or item.startswith("data:image/")))


def _size(item: Any) -> int:
    return len(json.dumps(item, default=str)) if not isinstance(item, (str, bytes, bytearray)) else len(item)


def trace_payload(value: Any) -> Any:
    """What a trace may carry of a run's inputs and outputs: no image data, no secrets."""
    from mllm_guidance.redact import redact

    return redact(strip_images(value))


def image_safe_client(**kwargs: Any) -> Any:
    """A LangSmith client that never uploads image data or secrets."""
    from langsmith import Client

    # the anonymizer also reaches run metadata and error text (a provider's raw exception)
    return Client(anonymizer=trace_payload, hide_inputs=trace_payload, hide_outputs=trace_payload, **kwargs)


def image_safe_tracer(client: Any = None, **kwargs: Any) -> Any:
    """A LangChain tracer on the image-safe client that also masks what the client's hooks never
    see: the ``serialized`` description of each model and chain (a model's repr may quote what it
    was built with)."""
    from langchain_core.tracers.langchain import LangChainTracer

    class _Tracer(LangChainTracer):
        def on_chat_model_start(self, serialized: dict[str, Any], *args: Any, **kw: Any) -> Any:
            return super().on_chat_model_start(trace_payload(serialized), *args, **kw)

        def on_llm_start(self, serialized: dict[str, Any], *args: Any, **kw: Any) -> Any:
            return super().on_llm_start(trace_payload(serialized), *args, **kw)

        def on_chain_start(self, serialized: dict[str, Any], *args: Any, **kw: Any) -> Any:
            return super().on_chain_start(trace_payload(serialized), *args, **kw)

        def on_tool_start(self, serialized: dict[str, Any], *args: Any, **kw: Any) -> Any:
            return super().on_tool_start(trace_payload(serialized), *args, **kw)

    return _Tracer(client=client or image_safe_client(), **kwargs)


def tracing_callbacks() -> list[Any]:
    """The image-safe LangSmith tracer when tracing is enabled by the environment, else nothing."""
    try:
        from langsmith.utils import tracing_is_enabled
    except ImportError:
        return []
    if not tracing_is_enabled():
        return []
    return [image_safe_tracer()]


# -- mllm-guidance trace show ------------------------------------------------------------------


def trace_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per step of a run.json: step, round, layout change, reasoning, score, tokens, seconds."""
    usage: dict[tuple[str, int], list[float]] = {}
    for call in record.get("calls", []):
        key = (call.get("step"), call.get("round"))
        tokens, seconds = usage.get(key, [0, 0.0])
        usage[key] = [tokens + call.get("input_tokens", 0) + call.get("output_tokens", 0), seconds + call.get("seconds", 0.0)]

    def row(step: str, k: int, change: str, why: str, score: Any = None, seconds: float | None = None) -> dict[str, Any]:
        tokens, secs = usage.get((step, k), [0, 0.0])
        return {"step": step, "round": k, "change": change, "reasoning": why or "", "score": score,
                "tokens": int(tokens), "seconds": round(seconds if seconds is not None else secs, 3)}

    from mllm_guidance.layout import Layout

    rows = []
    rounds = record.get("rounds", [])
    if any(c.get("step") == "place" for c in record.get("calls", [])):
        first = record["corrections"][0]["before"] if record.get("corrections") else (rounds[0]["layout"] if rounds else None)
        placed = Layout.model_validate(first) if first else Layout()
        rows.append(row("place", 0, f"{len(placed)} objects: {', '.join(placed.names)}", ""))
    for c in record.get("corrections", []):
        rows.append(row("self_correct", c["index"], c["diff"], c["reasoning"]))
    for i, r in enumerate(rounds):
        if i > 0:
            before, after = rounds[i - 1].get("layout"), r.get("layout")
            change = Layout.model_validate(before).diff(Layout.model_validate(after)).summary() if before and after else ""
            rows.append(row("align", i - 1, change, r.get("layout_reasoning", "")))
        rows.append(row("generate", i, "; ".join(r.get("generator_notes", [])), "", seconds=r.get("seconds", 0.0)))
        if r.get("reasoning") is not None or r.get("score") is not None:
            rows.append(row("reason", i, "", r.get("reasoning") or "", r.get("score")))
    return rows


def format_table(rows: list[dict[str, Any]], width: int | None = None) -> str:
    """The rows as a text table (rich's: long reasoning wraps in its column, never cut), ``width``
    columns wide (default: the terminal's)."""
    import io
    import shutil

    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name, justify in (("step", "left"), ("round", "right"), ("change", "left"), ("reasoning", "left"),
                          ("score", "right"), ("tokens", "right"), ("seconds", "right")):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in rows:
        table.add_row(*("" if r[h] is None else str(r[h]) for h in ("step", "round", "change", "reasoning", "score",
                                                                     "tokens", "seconds")))
    out = io.StringIO()
    Console(file=out, width=width or shutil.get_terminal_size((120, 24)).columns, color_system=None,
            highlight=False, markup=False).print(table)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


def show(run_dir: str | Path) -> str:
    from mllm_guidance.errors import InputError
    from mllm_guidance.store import RUN_FILE, RunStore

    if not Path(run_dir).is_dir():
        raise InputError(f"{run_dir} is not a run directory")
    record = RunStore(run_dir).read_json(RUN_FILE)
    u = record.get("usage", {})
    head = (f"{record.get('prompt')}\nmode {record.get('mode')} · stop {record.get('stop_reason')} · best round "
            f"{record.get('best_round')} (score {record.get('score')}) · {u.get('mllm_calls')} MLLM calls, "
            f"{u.get('generator_calls')} renders")
    return head + "\n\n" + format_table(trace_rows(record))
