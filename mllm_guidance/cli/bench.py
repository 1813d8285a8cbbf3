"""``bench``: run a benchmark, and read its results (``datasets``, ``compare``, ``correlate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mllm_guidance.cli.app import app, echo, manners
from mllm_guidance.cli.options import (
    LOOP_OPTION_FLAGS,
    SHARED_CONFIG_FLAGS,
    choice_type,
    config_params,
    config_values,
    generator_options,
    generator_params,
    make_cli_config,
    make_cli_settings,
    mllm_options,
    mllm_params,
    plain,
    scorer_options,
    scorer_params,
    with_params,
)
from mllm_guidance.cli.progress import Progress
from mllm_guidance.cli.run_commands import pick_generator, pick_mllm
from mllm_guidance.config import MODES
from mllm_guidance.errors import InputError, RunIncomplete, first_problem

#: The method's knobs a benchmark varies (the mode is --method; the seed is bench's own --seed).
BENCH_CONFIG_FLAGS = ("max_align_rounds", "max_correct_rounds", "is_good", "align_context", "align_empty", "steps",
                      "guidance_scale", "width") + LOOP_OPTION_FLAGS

SCORER_HELP = ("Comma-separated: mllm (the T2I-CompBench judge), mllm-reason (the guide's reason rubric), clipscore, "
               "blip-vqa, blip-clip, vqascore, geneval, text-rendering (OCR of quoted text), layout-adherence (detector IoU with the plan).")

bench_app = typer.Typer(help="Run a benchmark (or: bench datasets | score DIR --scorer ... | compare DIR... | correlate --human CSV DIR).",
                        invoke_without_command=True, no_args_is_help=False)
app.add_typer(bench_app, name="bench")


@bench_app.callback(invoke_without_command=True)
@manners
@with_params(mllm_params(), generator_params(), config_params(BENCH_CONFIG_FLAGS + SHARED_CONFIG_FLAGS),
             scorer_params())
def bench(
    ctx: typer.Context,
    dataset: str | None = typer.Option(None, "--dataset", help="rls300, spatial, 3d-spatial, non-spatial, complex, geneval, "
                                       "genai-bench, dpg-bench, or a file (.txt/.jsonl/.csv)."),
    suite: str | None = typer.Option(None, "--suite", help="geneval, genai-bench, dpg-bench, t2i-compbench or rls-300: that benchmark's "
                                     "prompts, images per prompt, scorers and table."),
    method: choice_type("Method", MODES) = typer.Option("full", "--method", help="The graph mode to evaluate."),  # type: ignore[valid-type]
    images_per_prompt: int | None = typer.Option(None, "--images-per-prompt", min=1, help="Images per prompt (default 1, or the suite's)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Image j of a prompt uses seed + j."),
    scorer: str | None = typer.Option(None, "--scorer", help=SCORER_HELP),
    shard: str = typer.Option("0/1", "--shard", help="i/n: this machine's share of the items."),
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="Prompts in flight at once."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N prompts."),
    max_batch: int = typer.Option(1, "--max-batch", min=1, help="Renders that wait together go to the generator as one "
                                  "batch of up to N (generators that cannot batch render alone)."),
    ray: bool = typer.Option(False, "--ray", help="Render on Ray generator actors (one per GPU) on a local Ray runtime; "
                             "needs the ray extra."),
    ray_address: str | None = typer.Option(None, "--ray-address", metavar="ADDR", help="Join this Ray cluster "
                                           "(ray://HOST:10001, or auto) instead of starting one; implies --ray."),
    ray_workers: int | None = typer.Option(None, "--ray-workers", min=1, help="Generator actors (default: one per GPU, "
                                           "or per unit of --ray-resources)."),
    ray_gpus_per_worker: float | None = typer.Option(None, "--ray-gpus-per-worker", min=0, help="GPUs each actor "
                                                     "holds (default 1 on a cluster with GPUs; 0.5: two actors per GPU)."),
    ray_resources: str | None = typer.Option(None, "--ray-resources", metavar="JSON", help='Custom Ray resources each '
                                             'actor needs, e.g. \'{"sim_gpu": 1}\'.'),
    out: str | None = typer.Option(None, "--out", metavar="DIR", help="Output directory (results.jsonl, images/, summary)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    **options: Any,
) -> int:
    """Run a benchmark: every prompt of a dataset through one method, scored and summarized."""
    if ctx.invoked_subcommand is not None:
        return 0
    import asyncio

    from mllm_guidance.eval import lock, tables
    from mllm_guidance.eval.runner import BenchSpec, plan_items, rewrite_results, run_bench
    from mllm_guidance.eval.scorers import build_scorers, score_records

    method = plain(method)
    names = [s.strip() for s in (scorer or "").split(",") if s.strip()]
    if suite is not None:
        from mllm_guidance.eval.suites import resolve_suite

        dataset, images_per_prompt, names = resolve_suite(suite, dataset, images_per_prompt, names)
    if not dataset or not out:
        raise InputError("give --dataset (or --suite) and --out (or: bench datasets | compare DIR... | correlate --human CSV DIR)")
    try:
        index, count = (int(x) for x in shard.split("/"))
    except ValueError:
        raise InputError(f"--shard {shard!r}: give i/n, e.g. 0/4") from None
    progress = Progress(quiet=quiet)
    config = make_cli_config({**config_values(options), "mode": method})
    ray_options = _ray_options(ray or ray_address is not None, ray_address, ray_workers, ray_gpus_per_worker, ray_resources)
    generator = options["generator"]
    if generator is None and ray_options is None:
        generator = pick_generator(progress)  # on Ray, the actors pick by the cluster's GPUs
    spec = BenchSpec(
        dataset=dataset, out=Path(out), method=method, images_per_prompt=images_per_prompt or 1, seed=seed,
        mllm=pick_mllm(options["mllm"], method, progress), generator=generator,
        config=config.describe(), settings=make_cli_settings(options).describe(), mllm_options=mllm_options(options).model_dump(exclude_defaults=True),
        generator_options=generator_options(options), shard=(index, count), concurrency=concurrency, limit=limit,
        max_batch=max_batch, ray=ray_options,
    )
    plan_items(spec)  # a bad dataset, limit or shard is refused before --out is made
    with lock.exclusive(spec.out):  # one process writes an output directory: run, score, summary
        # every scorer (and its model, and the judge's key) is ready before the first image is spent
        built = build_scorers(names, scorer_options(options, mllm_options(options), concurrency)) if names else []
        _say_notices(built)
        try:
            records = asyncio.run(run_bench(spec, progress=progress))
        finally:
            progress.close()
        if progress.load is not None and progress.done:
            progress.say(progress.load())  # what bound the run: the MLLM budget or the generator
        if built:
            records = score_records(spec.out, records, built)
            rewrite_results(spec.out, records)
        row = tables.write_summary(spec.out, records)
    echo(tables.summary_markdown(row))
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        raise RunIncomplete(f"{len(failed)} of {len(records)} item(s) failed; see results.jsonl (rerun the same "
                            "command to retry them)")
    return 0


def _say_notices(scorers: list[Any]) -> None:
    """What a scorer does differently from its reference in this install (e.g. BLIP-VQA without spaCy), on stderr."""
    for scorer in scorers:
        if getattr(scorer, "notice", None):
            echo(f"warning: {scorer.notice}", err=True)


def _ray_options(ray: bool, address: str | None, workers: int | None, gpus: float | None, resources: str | None) -> Any:
    """RayOptions from the --ray flags (None without --ray); a refused value is one line naming its flag."""
    if not ray:
        given = [flag for flag, value in (("--ray-workers", workers), ("--ray-gpus-per-worker", gpus),
                                          ("--ray-resources", resources)) if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} only apply with --ray or --ray-address")
        return None
    import json

    from pydantic import ValidationError

    from mllm_guidance.backends.ray_pool import RayOptions

    try:
        parsed = json.loads(resources) if resources else {}
    except json.JSONDecodeError as exc:
        raise InputError(f'--ray-resources: not JSON ({exc.msg}); give e.g. \'{{"sim_gpu": 1}}\'') from None
    try:
        return RayOptions(address=address, workers=workers, gpus_per_worker=gpus, resources=parsed)
    except ValidationError as exc:
        raise InputError(f"--ray-resources: {first_problem(exc)}; give a JSON object of names to amounts") from None


@bench_app.command()
@manners
@with_params(scorer_params())
def score(
    directory: str = typer.Argument(..., metavar="DIR", help="A benchmark output directory (results.jsonl, images/, runs/)."),
    scorer: str = typer.Option(..., "--scorer", help=SCORER_HELP),
    **options: Any,
) -> int:
    """Add metrics to an existing benchmark without rendering: score its images, rewrite its results and summary."""
    from mllm_guidance.backends.mllm import MllmOptions
    from mllm_guidance.eval import lock, tables
    from mllm_guidance.eval.runner import RESULTS, read_results, rewrite_results
    from mllm_guidance.eval.scorers import build_scorers, score_records

    out = Path(directory)
    if not (out / RESULTS).is_file():
        raise InputError(f"{out} has no {RESULTS}; give a directory that mllm-guidance bench wrote")
    names = [s.strip() for s in scorer.split(",") if s.strip()]
    if not names:
        raise InputError("--scorer: name at least one scorer")
    with lock.exclusive(out):
        built = build_scorers(names, scorer_options(options, MllmOptions(), 8))  # every model loads first
        _say_notices(built)
        records = read_results(out / RESULTS)
        records = score_records(out, records, built)
        rewrite_results(out, records)
        row = tables.write_summary(out, records)
    echo(tables.summary_markdown(row))
    return 0


@bench_app.command()
@manners
def datasets() -> int:
    """List the built-in datasets with their sizes."""
    from mllm_guidance.eval.datasets import list_datasets

    for name, count, about in list_datasets():
        echo(f"{name:<12} {count:>4}  {about}")
    return 0


@bench_app.command()
@manners
def compare(dirs: list[str] = typer.Argument(..., help="Benchmark output directories.")) -> int:
    """Put several benchmark runs side by side."""
    from mllm_guidance.eval import tables

    echo(tables.markdown(tables.compare(dirs)))
    return 0


@bench_app.command()
@manners
def correlate(
    directory: str = typer.Argument(..., metavar="DIR", help="A benchmark output directory."),
    human: str = typer.Option(..., "--human", help="CSV with a 'rating' column and a 'key' or 'image' column."),
) -> int:
    """Kendall tau and Spearman rho of every metric against human ratings."""
    from mllm_guidance.eval import tables
    from mllm_guidance.eval.runner import RESULTS, read_results

    echo(tables.markdown(tables.correlate(read_results(Path(directory) / RESULTS), human)))
    return 0
