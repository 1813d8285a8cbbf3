"""What binds a benchmark: the MLLM's rate budget or the generator, and the ETA it implies.

With real backends a benchmark is rarely CPU-bound: either the GPUs are busy rendering or the API
key's tokens (or requests) per minute run out. ``LoadMeter`` watches the finished items and says
which, in one line for the progress output: ``MLLM tokens/min: 92% of budget; requests/min: 31%
of budget; generator: 40% busy; bound by MLLM tokens/min; ETA 5m 20s``. The ETA of a budget that
binds is the remaining items' tokens (or requests) at the budget's pace; otherwise it is the pace
seen so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mllm_guidance.backends.rate_limit import HEADROOM

#: Share of a budget (or of the generator's time) in use above which it is what binds.
BINDING = 0.8


class LoadMeter:
    """Counts finished items' MLLM tokens, calls and render seconds against their limits."""

    def __init__(self, total: int, *, devices: int = 1, rpm: int | None = None, tpm: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.devices, self.rpm, self.tpm, self.clock = total, max(1, devices), rpm, tpm, clock
        self.started = clock()
        self.done = self.tokens = self.calls = 0
        self.render_seconds = 0.0

    def add(self, record: dict[str, Any]) -> None:
        self.done += 1
        self.tokens += int(record.get("input_tokens") or 0) + int(record.get("output_tokens") or 0)
        self.calls += int(record.get("mllm_calls") or 0)
        self.render_seconds += float(record.get("generator_seconds") or 0.0)

    def figures(self) -> dict[str, Any]:
        """Rates, shares of their limits, what binds and the ETA (seconds; None before the first item)."""
        elapsed = max(1e-9, self.clock() - self.started)
        minutes = elapsed / 60
        out: dict[str, Any] = {"tokens_per_min": self.tokens / minutes, "requests_per_min": self.calls / minutes,
                               "generator_busy": self.render_seconds / (elapsed * self.devices)}
        shares = {"generator": out["generator_busy"]}
        if self.tpm:
            shares["MLLM tokens/min"] = out["tokens_per_min"] / self.tpm
        if self.rpm:
            shares["MLLM requests/min"] = out["requests_per_min"] / self.rpm
        out["shares"] = shares
        bound, share = max(shares.items(), key=lambda kv: kv[1])
        out["bound"] = bound if share >= BINDING else None
        remaining = max(0, self.total - self.done)
        if not self.done:
            out["eta"] = None
        elif bound == "MLLM tokens/min" and out["bound"]:
            out["eta"] = remaining * self.tokens / self.done / (self.tpm * (1 - HEADROOM) / 60)
        elif bound == "MLLM requests/min" and out["bound"]:
            out["eta"] = remaining * self.calls / self.done / (self.rpm * (1 - HEADROOM) / 60)
        elif bound == "generator" and out["bound"]:
            out["eta"] = remaining * self.render_seconds / self.done / self.devices
        else:
            out["eta"] = remaining * elapsed / self.done
        return out

    def line(self) -> str:
        f = self.figures()
        parts = [f"MLLM tokens/min: {f['shares']['MLLM tokens/min']:.0%} of budget" if self.tpm
                 else f"MLLM tokens/min: {f['tokens_per_min']:,.0f}",
                 f"requests/min: {f['shares']['MLLM requests/min']:.0%} of budget" if self.rpm
                 else f"requests/min: {f['requests_per_min']:,.0f}",
                 f"generator: {f['generator_busy']:.0%} busy"]
        parts.append(f"bound by {f['bound']}" if f["bound"] else "bound by latency (raise --concurrency)")
        if f["eta"] is not None:
            parts.append(f"ETA {duration(f['eta'])}")
        return "; ".join(parts)


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
