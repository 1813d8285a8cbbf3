"""``templates``, ``trace`` and ``mcp``: the prompts, a run's trace, and the MCP server."""

from __future__ import annotations

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
    with_params,
)
from mllm_guidance.errors import InputError


@app.command()
@manners
def templates(
    action: choice_type("TemplatesAction", ("show", "export")) = typer.Argument(..., help="show or export."),  # type: ignore[valid-type]
    target: str | None = typer.Argument(None, help="show: a step name; export: a directory."),
    directory: str | None = typer.Option(None, "--templates", metavar="DIR", help="Show this directory's set instead of the built-in one."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> int:
    """Show or export the prompt templates."""
    from mllm_guidance.prompts.steps import STEP_NAMES, step_named
    from mllm_guidance.prompts.templates import export_templates, load_templates

    if plain(action) == "export":
        if not target:
            raise InputError("give the directory to export into: mllm-guidance templates export DIR")
        for path in export_templates(target):
            echo(path)
        return 0
    loaded = load_templates(directory)
    try:
        steps = [step_named(target).name] if target else list(STEP_NAMES)
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None
    for step in steps:
        tpl = loaded.steps[step]
        blocks = "".join(f"--- {name} (optional) ---\n{block.template}\n" for name, block in tpl.blocks.items())
        echo(f"===== {step} ({loaded.version}) =====\n{tpl.instructions}\n--- request ---\n{tpl.request.template}\n{blocks}")
    return 0


@app.command()
@manners
def trace(
    action: choice_type("TraceAction", ("show",)) = typer.Argument(..., help="show"),  # type: ignore[valid-type]
    run_dir: str = typer.Argument(..., help="A run directory (with run.json)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> int:
    """Show a run's rounds as a table."""
    from mllm_guidance.evidence.tracing import show

    echo(show(run_dir))
    return 0


@app.command()
@manners
@with_params(mllm_params(), generator_params(), config_params(SHARED_CONFIG_FLAGS + LOOP_OPTION_FLAGS))
def mcp(
    runs_dir: str | None = typer.Option(None, "--runs-dir", help="Where each call's run directory goes (default: "
                                        "MLLM_GUIDANCE_RUNS_DIR, else runs)."),
    http: bool = typer.Option(False, "--http", help="Streamable HTTP instead of stdio."),
    host: str = typer.Option("127.0.0.1", "--host", help="HTTP host."),
    port: int = typer.Option(8000, "--port", help="HTTP port."),
    max_concurrent: int | None = typer.Option(None, "--max-concurrent", min=1, help="Runs at once; more calls wait "
                                              "their turn (default: MLLM_GUIDANCE_MAX_CONCURRENT, else 2)."),
    keep_runs: int | None = typer.Option(None, "--keep-runs", min=1, help="Run directories kept, the oldest this "
                                         "server made removed (default: MLLM_GUIDANCE_KEEP_RUNS, else 200)."),
    client_max_rounds: int | None = typer.Option(None, "--client-max-rounds", min=0, help="The largest K a client may "
                                                 "ask for (default: MLLM_GUIDANCE_CLIENT_MAX_ROUNDS, else 20)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    **options: Any,
) -> int:
    """Serve generate_image and plan_layout over MCP (stdio, or --http)."""
    try:
        from mllm_guidance.mcp_server import create_server
    except ImportError as exc:
        raise InputError(f"the MCP server needs the mcp package: pip install 'mllm-guidance[mcp]' ({exc})") from None
    ops = operator_flags(options, runs_dir=runs_dir, max_concurrent=max_concurrent, keep_runs=keep_runs,
                         client_max_rounds=client_max_rounds)
    server = create_server(
        mllm=ops.mllm, generator=ops.generator, config=make_cli_config({**ops.config, **config_values(options)}),
        runs_dir=ops.runs_dir or "runs", mllm_options=mllm_options(with_base_url(options, ops)),
        generator_options=generator_options(options),
        host=host, port=port, max_concurrent=ops.max_concurrent, keep_runs=ops.keep_runs, limits=ops.limits,
        settings=make_cli_settings(options),
    )
    server.run(transport="streamable-http" if http else "stdio")
    return 0


@app.command()
@manners
@with_params(mllm_params(), generator_params(), config_params(SHARED_CONFIG_FLAGS + LOOP_OPTION_FLAGS))
def studio(
    runs_dir: str | None = typer.Option(None, "--runs-dir", help="Where the studio's runs go, and the runs it opens "
                                        "(default: MLLM_GUIDANCE_RUNS_DIR, else runs/studio)."),
    bench_dir: str | None = typer.Option(None, "--bench-dir", help="The root benchmark directories are opened from "
                                         "(default: MLLM_GUIDANCE_BENCH_DIR, else .)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (127.0.0.1: this machine only)."),
    port: int = typer.Option(7860, "--port", help="Port."),
    client_max_rounds: int | None = typer.Option(None, "--client-max-rounds", min=0, help="The largest K the page "
                                                 "offers (default: MLLM_GUIDANCE_CLIENT_MAX_ROUNDS, else 20)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    **options: Any,
) -> int:
    """Open the studio in a browser: plan and move boxes, watch each round, open runs and benchmarks."""
    try:
        from mllm_guidance.studio.app import build_studio, launch
    except ImportError as exc:
        raise InputError(f"the studio needs gradio: pip install 'mllm-guidance[studio]' ({exc})") from None
    ops = operator_flags(options, runs_dir=runs_dir, bench_dir=bench_dir, client_max_rounds=client_max_rounds)
    runs_dir = ops.runs_dir or "runs/studio"
    app_ = build_studio(runs_dir=runs_dir, bench_dir=ops.bench_dir, mllm=ops.mllm, generator=ops.generator,
                        config=make_cli_config({**ops.config, **config_values(options)}),
                        mllm_options=mllm_options(with_base_url(options, ops)), generator_options=generator_options(options),
                        limits=ops.limits, settings=make_cli_settings(options))
    echo(f"studio on http://{host}:{port} (runs in {runs_dir}). It has no login: to use it from another machine, "
         f"tunnel to it (ssh -L {port}:127.0.0.1:{port} THIS-HOST) rather than serving it on a public address", err=True)
    launch(app_, server_name=host, server_port=port)
    return 0


def operator_flags(options: dict[str, Any], **flags: Any) -> Any:
    """The operator's settings: the environment (``MLLM_GUIDANCE_*``), then these flags and the
    backend flags over it (``settings.py``)."""
    from mllm_guidance.settings import operator_settings

    return operator_settings(mllm=options.get("mllm"), generator=options.get("generator"), **flags)


def with_base_url(options: dict[str, Any], ops: Any) -> dict[str, Any]:
    """The flags, with the operator's MLLM_GUIDANCE_MLLM_BASE_URL where --mllm-base-url is unset."""
    return {**options, "mllm_base_url": options.get("mllm_base_url") or ops.mllm_base_url}
