"""The benchmark runner: many prompts in flight, one generator, resumable, shardable.

Work items are (prompt, image index) pairs; image j of a prompt uses seed ``seed + j``. Prompts run
concurrently (bounded by ``concurrency``) as runs of the one run layer (``run.Run``) sharing one
set of backends: MLLM calls overlap on the event loop, while renders take turns on their device
(``backends.generator.render``): one model in memory, never two copies. Each finished image is
written atomically to ``images/``, then its record is appended to ``results.jsonl``; a rerun skips
every item with an ``ok`` record, so a killed run loses at most the items in flight.
``shard=(i, n)`` takes every n-th item starting at i of the full, ordered item list, so shards run
on several machines union to the full run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_guidance import __version__
from mllm_guidance.config import make_config
from mllm_guidance.errors import InputError
from mllm_guidance.eval.datasets import Prompt, dataset_category, load_dataset
from mllm_guidance.prompts.templates import load_templates
from mllm_guidance.redact import redact_text
from mllm_guidance.run import Run, build_backends
from mllm_guidance.store import RunStore

RESULTS = "results.jsonl"


@dataclass
class BenchSpec:
    """One benchmark run: which prompts, which method, which models, where."""

    dataset: str
    out: Path
    method: str = "full"
    images_per_prompt: int = 1
    seed: int = 0
    mllm: Any = None
    generator: Any = None  # None: what generate picks (gligen-xl with a CUDA GPU, else sketch), named in every record
    config: dict[str, Any] = field(default_factory=dict)
    mllm_options: dict[str, Any] = field(default_factory=dict)
    generator_options: dict[str, Any] = field(default_factory=dict)
    shard: tuple[int, int] = (0, 1)
    concurrency: int = 8
    limit: int | None = None


@dataclass(frozen=True)
class Item:
    key: str
    prompt: Prompt
    image_index: int
    seed: int


def plan_items(spec: BenchSpec) -> tuple[str, list[Item]]:
    name, prompts = load_dataset(spec.dataset)
    if spec.limit is not None:
        prompts = prompts[: spec.limit]
    items = [Item(key=f"{p.id}-{j}", prompt=p, image_index=j, seed=spec.seed + j)
             for p in prompts for j in range(spec.images_per_prompt)]
    index, count = spec.shard
    if not (count >= 1 and 0 <= index < count):
        raise InputError(f"--shard {index}/{count}: give i/n with 0 <= i < n")
    return name, items[index::count]


def read_results(path: Path) -> list[dict[str, Any]]:
    """Records in order; a line torn by a kill is skipped; the last record of a key wins."""
    if not path.exists():
        return []
    latest: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "key" in record:
            latest.pop(record["key"], None)
            latest[record["key"]] = record
    return list(latest.values())


class _Results:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


async def run_bench(spec: BenchSpec, *, progress: Any = None,
                    on_record: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Generate every pending item of the spec; returns all records of the output directory.

    ``progress`` (the CLI's renderer) is told the number of pending items and each record."""
    out = Path(spec.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    dataset, items = plan_items(spec)
    done = {r["key"] for r in read_results(out / RESULTS) if r.get("status") == "ok"}
    pending = [item for item in items if item.key not in done]
    results = _Results(out / RESULTS)
    base = make_config({**spec.config, "mode": spec.method})
    backends = build_backends(spec.mllm, spec.generator, mllm_options=spec.mllm_options,
                              generator_options=spec.generator_options, needs_mllm=spec.method != "plain")
    pins = {
        "dataset": dataset, "category": dataset_category(spec.dataset), "method": spec.method, "package_version": __version__,
        "template_set": load_templates(base.templates_dir).version,
        "models": {"mllm": backends.mllm_setting.described if backends.mllm_setting else None,
                   "generator": backends.generator_setting.described},
    }
    if progress is not None:
        progress.total = len(pending)
    gate = asyncio.Semaphore(max(1, spec.concurrency))

    async def one(item: Item) -> None:
        async with gate:
            run_dir = out / "runs" / item.key
            if run_dir.exists():
                shutil.rmtree(run_dir)  # left by a killed attempt
            started = time.perf_counter()
            record: dict[str, Any] = {"key": item.key, "prompt_id": item.prompt.id, "prompt": item.prompt.text,
                                      "image_index": item.image_index, "seed": item.seed, **pins}
            try:
                run = Run.create(item.prompt.text, config=make_config(base, seed=item.seed), run_dir=run_dir,
                                 backends=backends)
                result = await run.execute(checkpoint=False)
                image = f"images/{item.key}.png"
                RunStore(out).write_bytes(image, result.image_path.read_bytes())
                u = result.usage
                record.update({
                    "status": "ok", "image": image, "run_dir": f"runs/{item.key}",
                    "rounds_used": len(result.rounds), "final_score": result.score,
                    "round_scores": [r.score for r in result.rounds], "stop_reason": result.stop_reason,
                    "mllm_calls": u.mllm_calls, "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                    "generator_calls": u.generator_calls, "generator_seconds": round(u.generator_seconds, 4),
                    "failures": len(result.failures), "metrics": {},
                })
            except Exception as exc:  # a failed prompt is recorded and the others go on
                record.update({"status": "failed", "error": f"{type(exc).__name__}: {redact_text(str(exc))}"[:1000]})
            record["seconds"] = round(time.perf_counter() - started, 4)
            results.append(record)
            if progress is not None:
                progress.record(record)
            if on_record:
                on_record(record)

    await asyncio.gather(*(one(item) for item in pending))
    return read_results(out / RESULTS)


def rewrite_results(out: Path, records: list[dict[str, Any]]) -> None:
    """Replace results.jsonl with one line per record (after scoring), atomically."""
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    RunStore(out).write_text(RESULTS, text)
