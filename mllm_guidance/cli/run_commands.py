"""``generate`` and ``plan``: one run, from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mllm_guidance.cli.app import app, current, echo, manners
from mllm_guidance.cli.options import (
    SHARED_CONFIG_FLAGS,
    config_params,
    config_values,
    generator_options,
    generator_params,
    make_cli_config,
    make_cli_settings,
    mllm_options,
    mllm_params,
    out_dir,
    with_params,
)
from mllm_guidance.cli.progress import Progress
from mllm_guidance.errors import ConfigError, GuidanceError, InputError, RunIncomplete

OUT = typer.Option(None, "--out", metavar="DIR", help="Run directory (default: runs/<time>-<prompt>).")
QUIET = typer.Option(False, "--quiet", help="No progress output.")
JSON = typer.Option(False, "--json", help="Print the result as JSON.")
DEBUG = typer.Option(False, "--debug", help="Show tracebacks.")


@app.command()
@manners
@with_params(mllm_params(), generator_params(), config_params())
def generate(
    prompt: str | None = typer.Argument(None, help="What the image must show."),
    resume: str | None = typer.Option(None, "--resume", metavar="DIR", help="Continue an interrupted run."),
    no_checkpoint: bool = typer.Option(False, "--no-checkpoint", help="Do not write checkpoints (no --resume)."),
    review: bool = typer.Option(False, "--review", help="Show the planned layout before the first render and accept, "
                                "edit ($EDITOR) or stop."),
    review_align: bool = typer.Option(False, "--review-align", help="Also review each redesigned layout (implies --review)."),
    out: str | None = OUT, quiet: bool = QUIET, json: bool = JSON, debug: bool = DEBUG, **options: Any,
) -> int:
    """Run MLLM Guidance on a prompt."""
    from mllm_guidance.cli.review_prompt import terminal_reviewer

    progress = Progress(quiet=quiet)
    reviewer = terminal_reviewer(progress) if (review or review_align or resume) else None
    try:
        result = _run(prompt, resume, no_checkpoint, review, review_align, out, progress, reviewer, options)
    except (InputError, ConfigError):
        raise
    except GuidanceError as exc:
        if not progress.steps:  # nothing ran yet: a setup error (exit 2)
            raise
        hint = ("run the same command again (it kept no checkpoint)" if no_checkpoint else
                f"continue it with: mllm-guidance generate --resume {current['run_dir']}")
        raise RunIncomplete(f"{exc}; the run ended without its image, {hint}") from exc
    finally:
        progress.close()
    if json:
        echo(result.model_dump_json(indent=2))
        return 0
    u = result.usage
    per_step = ", ".join(f"{v.calls} {k}" for k, v in u.mllm.items())
    score = f"score {result.score}/5" if result.score is not None else "not judged"
    echo(f"best: round {result.best_round}, {score} (stop: {result.stop_reason})")
    echo(f"image:  {result.image_path}")
    echo(f"report: {Path(result.run_dir) / 'report.html'}")
    echo(
        f"calls:  {u.mllm_calls} MLLM ({per_step or 'none'}), {u.generator_calls} generator; "
        f"tokens {u.input_tokens} in / {u.output_tokens} out; {result.seconds:.1f}s"
    )
    if result.failures:
        echo(f"note:   {len(result.failures)} unreadable answer(s) were skipped; see run.json")
    return 0


def _run(prompt: str | None, resume: str | None, no_checkpoint: bool, review: bool, review_align: bool,
         out: str | None, progress: Progress, reviewer: Any, options: dict[str, Any]) -> Any:
    """The run ``generate`` asks for: a new one, or the one in ``--resume DIR`` continued."""
    from mllm_guidance.api import guide
    from mllm_guidance.api import resume as resume_run

    if resume:
        if prompt:
            raise InputError("give either a prompt or --resume DIR, not both")
        current["run_dir"] = resume
        progress.say(f"resuming {resume}")
        given = {"base_url": options["mllm_base_url"]} if options.get("mllm_base_url") else None
        return resume_run(resume, mllm=options["mllm"], generator=options["generator"], on_event=progress,
                          mllm_options=given, review=reviewer)
    if not prompt or not prompt.strip():
        raise InputError('give a prompt, e.g. mllm-guidance generate "a cat on a sofa"')
    _check(prompt)
    stages = "plan+align" if review_align else "plan" if review else None
    config = make_cli_config({**config_values(options), **({"review": stages} if stages else {})})
    run_dir = out_dir(out, prompt)
    current["run_dir"] = str(run_dir)
    return guide(
        prompt, mllm=pick_mllm(options["mllm"], config.mode, progress),
        generator=options["generator"] or pick_generator(progress), config=config, run_dir=run_dir,
        checkpoint=not no_checkpoint, on_event=progress, mllm_options=mllm_options(options),
        generator_options=generator_options(options), review=reviewer if stages else None,
        settings=make_cli_settings(options),
    )


@app.command()
@manners
@with_params(mllm_params(), config_params(SHARED_CONFIG_FLAGS))
def plan(
    prompt: str = typer.Argument(..., help="What the image must show."),
    correct_rounds: int = typer.Option(5, "--correct-rounds", min=0, max=50, help="Self-correct rounds (0: place only)."),
    out: str | None = OUT, quiet: bool = QUIET, json: bool = JSON, debug: bool = DEBUG, **options: Any,
) -> int:
    """The layout only: place and self-correct, with a sketch preview."""
    from mllm_guidance.api import plan as plan_layout

    _check(prompt)
    progress = Progress(quiet=quiet)
    try:
        planned = plan_layout(prompt, pick_mllm(options["mllm"], "place", progress), correct_rounds=correct_rounds,
                              config=make_cli_config(config_values(options)), run_dir=out_dir(out, prompt),
                              on_event=progress, mllm_options=mllm_options(options),
                              settings=make_cli_settings(options))
    finally:
        progress.close()
    layout = planned.layout
    if json:
        echo(layout.model_dump_json(indent=2) if layout else "null")
        return 0
    echo(layout.to_lines() if layout and not layout.is_empty else "(no layout)")
    for finding in planned.warnings:  # the prompts' advice to the MLLM, never enforced: information
        echo(f"layout rule: {finding}", err=True)
    echo(f"preview: {planned.preview_path}", err=True)
    return 0


def pick_mllm(spec: str | None, mode: str, progress: Progress) -> str | None:
    """The --mllm given, or the environment's default, said aloud (None for plain runs)."""
    if spec:
        return spec
    if mode == "plain":
        return None
    from mllm_guidance.backends.mllm import default_mllm_spec

    spec, why = default_mllm_spec()
    progress.say(f"MLLM: {spec} ({why}; choose another with --mllm)")
    return spec


def pick_generator(progress: Progress) -> str:
    from mllm_guidance.backends.registry import default_generator_spec

    spec, why = default_generator_spec()
    progress.say(f"generator: {spec} ({why})")
    return spec


def _check(prompt: str) -> None:
    from mllm_guidance.state import check_prompt  # here, not at the top: --help never imports LangGraph

    try:
        check_prompt(prompt)
    except ValueError as exc:
        raise InputError(str(exc)) from None
