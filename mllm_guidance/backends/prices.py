"""Estimated MLLM cost: token counts times a price table (USD per 1M input / output tokens).

The built-in table holds the providers' published list prices for standard (non-batch, uncached)
text+image tokens as of 2025; prices change, so treat the estimate as such and override entries
with ``RunSettings.prices`` or ``--prices FILE`` (JSON: {"model": [input, output]}). Local and
replayed models have no entry and no cost.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from mllm_guidance.errors import ConfigError

PRICES_AS_OF = "2025"
BUILTIN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.0-flash": (0.10, 0.40),
}


def price_for(model: str | None, overrides: Mapping[str, tuple[float, float]] | None = None) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens; dated snapshots (gpt-4o-2024-08-06) use their family."""
    if not model:
        return None
    table = {**BUILTIN_PRICES, **(overrides or {})}
    if model in table:
        return tuple(table[model])  # type: ignore[return-value]
    family = max((name for name in table if model.startswith(name + "-")), key=len, default=None)
    return tuple(table[family]) if family else None  # type: ignore[return-value]


def cost_usd(input_tokens: int, output_tokens: int, price: tuple[float, float] | None) -> float | None:
    if price is None:
        return None
    return (input_tokens * price[0] + output_tokens * price[1]) / 1e6


def load_prices(path: str | Path) -> dict[str, tuple[float, float]]:
    """A user price table: JSON mapping model name to [input, output] USD per 1M tokens."""
    from mllm_guidance.textfiles import read_user_text

    text = read_user_text(Path(path), "price table")
    try:
        raw = json.loads(text)
        table = {str(k): (float(v[0]), float(v[1])) for k, v in raw.items()}
    except (ValueError, TypeError, IndexError, AttributeError, RecursionError) as exc:
        raise ConfigError(f"{path}: a price file is JSON like {{\"gpt-4o\": [2.5, 10.0]}} ({exc})") from None
    if any(p < 0 for pair in table.values() for p in pair):
        raise ConfigError(f"{path}: prices cannot be negative")
    return table
