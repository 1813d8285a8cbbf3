"""The calling convention of the project's DiT pipelines (regional prompting on FLUX, CreatiLayout's
SiamLayout on SD3 and FLUX): ``pipe(prompt, regions)``, where a region is a phrase and its normalized
``[x1, y1, x2, y2]`` box, one list of them for one prompt, or one list per prompt for a batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: (phrase, normalized [x1, y1, x2, y2]) for one region.
Region = tuple[str, Sequence[float]]


def per_prompt(prompt: Any, regions: Sequence[Any]) -> tuple[list[str], list[list[Region]]]:
    """Prompts as a list, with one list of regions per prompt (a single prompt takes one list)."""
    if isinstance(prompt, str):
        return [prompt], [list(regions)]
    prompts = list(prompt)
    samples = [list(r) for r in regions] if regions else [[] for _ in prompts]
    if len(samples) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(samples)} region lists: give one list per prompt")
    if any(samples) and not all(samples):
        raise ValueError("some prompts have regions and some have none: render those separately")
    return prompts, samples
