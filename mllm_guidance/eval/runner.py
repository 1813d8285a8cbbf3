"""The benchmark runner: many prompts in flight, one generator, resumable, shardable.

Work items are (prompt, image index) pairs; image j of a prompt uses seed ``seed + j``. Prompts run
concurrently (bounded by ``concurrency``) as runs of the one run layer (``run.Run``) sharing one
set of backends: MLLM calls overlap on the event loop, while renders take turns on their device
(``backends.generator.render``): one model in memory, never two copies. Each finished image is
written atomically to ``images/``, then its record is appended to ``results.jsonl``; a rerun skips
every item with an ``ok`` record, so a killed run loses at most the items in flight.
``shard=(i, n)`` takes every n-th item starting at i of the full, ordered item list, so shards run
on several machines union to the full run.

What the runner trusts: nothing in a dataset names a path. A prompt id becomes a file name only
through ``item_name`` (a plain name stays as it is; anything else is cleaned and given a hash of
the id), duplicate ids are refused before anything runs, and the only directories the runner ever
removes are run directories it made itself under ``<out>/runs`` (marked by ``.bench-item``).
One process writes an output directory at a time (``eval.lock``). Records are stored with their
secrets masked.

Faster renders, both optional: ``max_batch`` > 1 lets renders that wait together go to the generator
as one batch (``backends.batching``; generators that cannot batch render alone), and ``ray`` sends
every render to Ray generator actors, one per GPU of a cluster (``backends.ray_pool``), while the
graph, the MLLM calls and every write stay in this process: the resume rule and the files are the
same, and a worker that dies costs only the renders it held (sent again, else recorded as failed).

The progress output says what binds the run (``eval.load``): the MLLM key's budget
(``--mllm-rpm`` / ``--mllm-tpm``, which its calls wait for instead of meeting 429s) or the
generator, with the ETA that follows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllm_guidance import __version__
from mllm_guidance.backends.batching import DEFAULT_MAX_WAIT, coalescing
from mllm_guidance.config import make_config
from mllm_guidance.run_settings import make_settings
from mllm_guidance.errors import InputError, StorageError
from mllm_guidance.eval import lock
from mllm_guidance.eval.datasets import Prompt, dataset_category, load_dataset
from mllm_guidance.eval.load import LoadMeter
from mllm_guidance.prompts.templates import load_templates
from mllm_guidance.redact import redact
from mllm_guidance.run import Run
from mllm_guidance.spec import Backends, ModelSetting, build_backends
from mllm_guidance.store import RunStore, append_line, link_or_copy, storage_error

RESULTS = "results.jsonl"
#: The file that marks a run directory as made by this runner: only those are ever removed.
MARKER = ".bench-item"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


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
    settings: dict[str, Any] = field(default_factory=dict)  # RunSettings fields
    mllm_options: dict[str, Any] = field(default_factory=dict)
    generator_options: dict[str, Any] = field(default_factory=dict)
    shard: tuple[int, int] = (0, 1)
    concurrency: int = 8
    limit: int | None = None
    max_batch: int = 1  # renders waiting together that go to the generator as one batch (1: each alone)
    batch_wait: float = DEFAULT_MAX_WAIT  # seconds the oldest waiting render waits for a batch to fill
    ray: Any = None  # None: renders in this process; a backends.ray_pool.RayOptions: on Ray generator actors


@dataclass(frozen=True)
class Item:
    key: str
    prompt: Prompt
    image_index: int
    seed: int


def item_name(prompt_id: str) -> str:
    """A prompt id as a file name: the id itself when it is a plain name (letters, digits, ``.``,
    ``_``, ``-``; not starting with a dot; at most 64 characters), else its cleaned form followed
    by a hash of the id, so that ``/tmp/x`` or ``../..`` name nothing outside the output
    directory and two ids never share a name."""
    cleaned = _UNSAFE.sub("_", prompt_id).strip("._-")[:64]
    if cleaned and cleaned == prompt_id:
        return cleaned
    digest = hashlib.sha256(prompt_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{cleaned}-{digest}" if cleaned else digest


def plan_items(spec: BenchSpec) -> tuple[str, list[Item]]:
    if spec.limit is not None and (isinstance(spec.limit, bool) or not isinstance(spec.limit, int) or spec.limit < 1):
        raise InputError(f"--limit {spec.limit}: give a number of prompts, 1 or more")
    if not isinstance(spec.images_per_prompt, int) or spec.images_per_prompt < 1:
        raise InputError(f"--images-per-prompt {spec.images_per_prompt}: give 1 or more")
    name, prompts = load_dataset(spec.dataset)
    if spec.limit is not None:
        prompts = prompts[: spec.limit]
    names: dict[str, str] = {}
    for p in prompts:
        key = item_name(p.id).casefold()  # one name on case-insensitive file systems too
        if key in names:
            raise InputError(f"dataset {name}: the prompt id {names[key]!r} is given twice" if names[key] == p.id else
                             f"dataset {name}: the prompt ids {names[key]!r} and {p.id!r} name the same files")
        names[key] = p.id
    items = [Item(key=f"{item_name(p.id)}-{j}", prompt=p, image_index=j, seed=spec.seed + j)
             for p in prompts for j in range(spec.images_per_prompt)]
    index, count = spec.shard
    if not (count >= 1 and 0 <= index < count):
        raise InputError(f"--shard {index}/{count}: give i/n with 0 <= i < n")
    return name, items[index::count]


def read_results(path: Path) -> list[dict[str, Any]]:
    """Records in order; a line torn by a kill is skipped; the last record of a key wins."""
    if not path.exists():
        return []
    from mllm_guidance.textfiles import read_user_bytes

    # a regular file, bounded (a link to /dev/zero is refused); a torn multi-byte character is skipped with its line
    text = read_user_bytes(path, "results file").decode("utf-8", errors="replace")
    latest: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
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
        line = json.dumps(redact(record), ensure_ascii=False, default=str) + "\n"
        append_line(self.path, line.encode("utf-8", errors="backslashreplace"), self._lock, durable=True)


def clear_leftover(run_dir: Path, key: str) -> None:
    """Remove what a killed attempt of this item left, and nothing else: a directory is removed
    only when this runner made it (its marker names the item) or when it is empty. Anything
    else in the way (a file, a link, someone's directory) fails the item and is left alone."""
    if not run_dir.is_symlink() and not run_dir.exists():
        return
    if run_dir.is_dir() and not run_dir.is_symlink():
        marker = run_dir / MARKER
        try:
            text = marker.read_text(encoding="utf-8") if marker.is_file() and not marker.is_symlink() else None
        except (OSError, UnicodeDecodeError):
            text = None
        # ours: the marker names the item; or a kill came while the marker was being written (then
        # the marker is all the directory holds, and what it holds is the start of the item's name)
        ours = text is not None and (text.strip() == key or
                                     ((key + "\n").startswith(text) and [p.name for p in run_dir.iterdir()] == [MARKER]))
        if ours:
            shutil.rmtree(run_dir)
            return
        if not any(run_dir.iterdir()):
            run_dir.rmdir()
            return
    raise InputError(f"{run_dir} is in the way and was not made by this benchmark; move it away and run again "
                     "(nothing was removed)")


def make_run_dir(run_dir: Path, key: str) -> None:
    try:
        run_dir.mkdir(parents=True)
        (run_dir / MARKER).write_text(key + "\n", encoding="utf-8")
    except OSError as exc:
        raise storage_error(exc, run_dir / MARKER, len(key) + 1) from None


async def run_bench(spec: BenchSpec, *, progress: Any = None,
                    on_record: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Generate every pending item of the spec; returns all records of the output directory.

    ``progress`` (the CLI's renderer) is told the number of pending items and each record. The
    output directory is locked for the whole call (``eval.lock``); a full disk stops the run with
    one line (``StorageError``), and running it again continues where it stopped."""
    dataset, items = plan_items(spec)  # a bad dataset is refused before anything is written
    with lock.exclusive(spec.out) as out:
        return await _run_locked(spec, out, dataset, items, progress, on_record)


async def _run_locked(spec: BenchSpec, out: Path, dataset: str, items: list[Item], progress: Any,
                      on_record: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
    RunStore(out / "images")
    done = {r["key"] for r in read_results(out / RESULTS) if r.get("status") == "ok"}
    pending = [item for item in items if item.key not in done]
    results = _Results(out / RESULTS)
    base = make_config({**spec.config, "mode": spec.method})
    # every in-flight prompt may hold a worker thread (a render, a batch being filled, a file write)
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(spec.concurrency + 4, thread_name_prefix="bench"))
    backends, pool = _backends(spec)
    try:
        return await _run_items(spec, out, dataset, pending, results, base, backends, progress, on_record)
    finally:
        if pool is not None:
            await asyncio.to_thread(pool.close)


async def _run_items(spec: BenchSpec, out: Path, dataset: str, pending: list[Item], results: _Results, base: Any,
                     backends: Backends, progress: Any, on_record: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
    pins = {
        "dataset": dataset, "category": dataset_category(spec.dataset), "method": spec.method, "package_version": __version__,
        "template_set": load_templates(make_settings(spec.settings).templates_dir).version,
        "models": {"mllm": backends.mllm_setting.described if backends.mllm_setting else None,
                   "mllm_spec": backends.mllm_setting.spec if backends.mllm_setting else None,
                   "generator": backends.generator_setting.described, "generator_spec": backends.generator_setting.spec},
    }
    budget = getattr(backends.mllm, "budget", None)
    meter = LoadMeter(len(pending), devices=getattr(backends.generator, "workers", 1),
                      rpm=getattr(budget, "rpm", None), tpm=getattr(budget, "tpm", None))
    if progress is not None:
        progress.total = len(pending)
        progress.load = meter.line
    gate = asyncio.Semaphore(max(1, spec.concurrency))

    async def one(item: Item) -> None:
        async with gate:
            run_dir = out / "runs" / item.key
            started = time.perf_counter()
            record: dict[str, Any] = {"key": item.key, "prompt_id": item.prompt.id, "prompt": item.prompt.text,
                                      "image_index": item.image_index, "seed": item.seed, **pins}
            try:
                run = await asyncio.to_thread(prepare, item, run_dir)  # file work off the event loop
                result = await run.execute(checkpoint=False)
                image = f"images/{item.key}.png"
                # a hard link to the run's final.png (a copy only across file systems)
                await asyncio.to_thread(link_or_copy, result.image_path, RunStore(out).path(image))
                u = result.usage
                record.update({
                    "status": "ok", "image": image, "run_dir": f"runs/{item.key}",
                    "rounds_used": len(result.rounds), "final_score": result.score,
                    "round_scores": [r.score for r in result.rounds], "stop_reason": result.stop_reason,
                    "mllm_calls": u.mllm_calls, "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                    "generator_calls": u.generator_calls, "generator_seconds": round(u.generator_seconds, 4),
                    "generator_cost_usd": round(u.generator_cost_usd, 4),
                    "failures": len(result.failures), "metrics": {},
                })
            except StorageError:
                raise  # a full disk fails every item alike: stop, and let a rerun continue
            except Exception as exc:  # a failed prompt is recorded and the others go on
                record.update({"status": "failed", "error": f"{type(exc).__name__}: {redact(str(exc))}"[:1000]})
            record["seconds"] = round(time.perf_counter() - started, 4)
            meter.add(record)
            await asyncio.to_thread(results.append, record)
            if progress is not None:
                progress.record(record)
            if on_record:
                on_record(record)

    def prepare(item: Item, run_dir: Path) -> Run:
        clear_leftover(run_dir, item.key)
        make_run_dir(run_dir, item.key)
        return Run.create(item.prompt.text, config=make_config(base, seed=item.seed), run_dir=run_dir, backends=backends,
                          settings=spec.settings)

    tasks = [asyncio.ensure_future(one(item)) for item in pending]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:  # one item's StorageError stops the others, which a rerun redoes
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return read_results(out / RESULTS)


def _backends(spec: BenchSpec) -> tuple[Backends, Any]:
    """The shared backends: the generator built here (coalescing renders when ``max_batch`` > 1), or
    a pool of Ray generator actors standing in for it (then also returned, to be closed)."""
    common = dict(mllm_options=spec.mllm_options, needs_mllm=spec.method != "plain")
    if spec.ray is None:
        backends = build_backends(spec.mllm, spec.generator, generator_options=spec.generator_options, **common)
        backends.generator = coalescing(backends.generator, spec.max_batch, spec.batch_wait)
        return backends, None
    from mllm_guidance.backends.ray_pool import RayGeneratorPool

    backends = build_backends(spec.mllm, "sketch", **common)  # the MLLM (and its key) is checked before Ray starts
    pool = RayGeneratorPool(spec.generator, spec.generator_options, spec.ray, max_batch=spec.max_batch,
                            max_wait=spec.batch_wait)
    # recorded as the generator the actors run (spec string and options), not as the pool object
    setting = ModelSetting(spec=pool.spec, described=pool.name, options=pool.generator_options if pool.spec else {},
                           license=pool.weights_license)
    return dataclasses.replace(backends, generator=pool, generator_setting=setting), pool


def rewrite_results(out: Path, records: list[dict[str, Any]]) -> None:
    """Replace results.jsonl with one line per record (after scoring), atomically."""
    text = "".join(json.dumps(redact(r), ensure_ascii=False, default=str) + "\n" for r in records)
    with lock.exclusive(out):
        RunStore(out).write_text(RESULTS, text)
