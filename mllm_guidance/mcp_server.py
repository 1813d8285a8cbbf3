"""MLLM Guidance as an MCP server: ``mllm-guidance mcp`` (stdio) or ``mllm-guidance mcp --http``.

Tools:
- ``generate_image(prompt, knobs...)``: the method's knobs every face shares (``knobs.py``: mode,
  max_rounds, correct_rounds, is_good, seed, width, height, repair, candidates, verifier,
  judge_mode; review is left out: a tool call has nobody to answer a pause), bounded by the
  operator's limits. The image as MCP image content, a text
  summary, and structured data (image path, score, rounds, layout, run directory), with its output
  schema. While it runs, the client gets a progress notification and a log message per finished
  step (a run takes minutes: clients such as the MCP Inspector give up on silent calls).
- ``plan_layout(prompt, correct_rounds?)``: the planned layout as text and structured data, with
  a sketch preview image.

The operator fixes the backends, the options and the runs directory when starting the server; a
client chooses only the prompt and the method's knobs above. Runs are bounded: at most
``max_concurrent`` at once (the others wait, with a progress message saying so), and only the newest
``keep_runs`` run directories this server made are kept (older finished ones are removed; a run
still going on never is, and ``keep_runs`` below ``max_concurrent`` is refused; nothing else in the
runs directory is touched).

Tools return ``CallToolResult`` objects on purpose (annotated with their output model): a plain
pydantic return would make the SDK serialize everything, image included, into JSON text. (This
module imports the ``mcp`` package: install the ``mcp`` extra.)
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
import threading
from pathlib import Path
from typing import Annotated, Any

from mcp.server.fastmcp import Context as McpContext
from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.types import CallToolResult, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from mllm_guidance import __version__
from mllm_guidance.api import aguide, aplan, default_run_dir
from mllm_guidance.config import GuidanceConfig, make_config
from mllm_guidance.errors import ConfigError, GuidanceError
from mllm_guidance.events import event_line
from mllm_guidance.run_settings import RunSettings
from mllm_guidance.knobs import PAUSING, KnobLimits, knob_model, to_config
from mllm_guidance.tool import tool_output

#: The file that marks a run directory as made by an MCP server: only those are ever pruned.
MARKER = ".mcp-run"


class LayoutObjectOut(BaseModel):
    name: str = Field(description="What the box holds.")
    box: list[float] = Field(description="[x1, y1, x2, y2], normalized 0..1, origin top-left.")


class GenerateOutput(BaseModel):
    """generate_image's structured result."""

    image_path: str = Field(description="The best image (PNG) on the server.")
    run_dir: str = Field(description="The run directory: every round's image, run.json, report.html.")
    score: int | None = Field(description="The MLLM's 1-5 score of the best image (None when not judged).")
    rounds: int = Field(description="Images rendered.")
    best_round: int
    stop_reason: str = Field(description="good, max_rounds, aligned, ...")
    layout: list[LayoutObjectOut] | None = Field(description="The best image's layout.")


class PlanOutput(BaseModel):
    """plan_layout's structured result."""

    layout: list[LayoutObjectOut] | None
    warnings: list[str]
    preview_path: str | None = Field(description="A sketch of the boxes (PNG) on the server.")


def create_server(
    mllm: Any = None,
    generator: Any = None,
    config: GuidanceConfig | dict[str, Any] | None = None,
    *,
    runs_dir: str | Path = "runs",
    mllm_options: dict[str, Any] | None = None,
    generator_options: dict[str, Any] | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_concurrent: int = 2,
    keep_runs: int = 200,
    limits: KnobLimits | None = None,
    settings: RunSettings | dict[str, Any] | None = None,
) -> FastMCP:
    """The MCP server over the operator's backends and config; ``limits`` narrow the knobs clients
    may set (``knobs.py``; default: the shared defaults, K at most 20)."""
    limits = limits or KnobLimits()
    if keep_runs < max_concurrent:
        raise ConfigError(f"--keep-runs {keep_runs} is below --max-concurrent {max_concurrent}: keep at least as many "
                          "run directories as runs go on at once")
    base = make_config(config)
    root = Path(runs_dir).resolve()
    server = FastMCP(
        "mllm-guidance",
        instructions="Generate images that show exactly what a prompt describes, or plan their layouts.",
        host=host,
        port=port,
    )
    server._mcp_server.version = __version__  # the SDK reports its own version unless told
    slots = asyncio.Semaphore(max(1, max_concurrent))
    pruning = threading.Lock()
    in_flight: set[Path] = set()  # run directories of calls still running: never pruned

    def failure(exc: GuidanceError) -> ToolError:
        """Our one-line error as the tool's error result (raised: the SDK checks returned results
        against the output schema, which an error has no data for)."""
        return ToolError(str(exc))

    def new_run_dir(prompt: str) -> Path:
        path = root / default_run_dir(prompt).name
        with pruning:
            path.mkdir(parents=True, exist_ok=True)
            (path / MARKER).write_text("")
            in_flight.add(path)
        return path

    def prune(done: Path | None) -> None:
        """Keep the newest ``keep_runs`` run directories this server made; a run still going on is
        never removed, however old."""
        with pruning:
            in_flight.discard(done)  # type: ignore[arg-type]
            ours = sorted((p for p in root.iterdir() if (p / MARKER).is_file() and not p.is_symlink()),
                          key=lambda p: p.stat().st_mtime)
            for old in ours[: max(0, len(ours) - keep_runs)]:
                if old not in in_flight:
                    shutil.rmtree(old, ignore_errors=True)

    async def bounded(ctx: McpContext, total: float | None, prompt: str, work: Any) -> Any:
        """Run ``work(on_event, run_dir)`` in a free slot and a new run directory, reporting each
        finished step as progress."""
        if slots.locked():
            await ctx.report_progress(0, total, "waiting for a free slot (the server runs "
                                                f"{max_concurrent} at a time)")
        async with slots:
            loop = asyncio.get_running_loop()
            done = 0

            def on_event(event: dict[str, Any]) -> None:
                nonlocal done
                message = event_line(event)
                if message is None:
                    return
                done += 1
                loop.create_task(ctx.report_progress(done, total, message))
                loop.create_task(ctx.info(message))

            run_dir = None
            try:
                run_dir = await asyncio.to_thread(new_run_dir, prompt)
                return await work(on_event, run_dir)
            finally:
                await asyncio.to_thread(prune, run_dir)

    generate_tool = server.tool(
        title="Generate an image that shows the prompt",
        description="Generate an image that shows exactly what the prompt describes (objects, attributes, spatial "
                    "relations, interactions): an MLLM plans boxes, a layout-grounded diffusion model renders them, "
                    "the MLLM scores the image 1-5 and redesigns the layout until it is good. Takes minutes; "
                    "sends progress. Returns the image and its score.",
        annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=True),
    )

    async def generate_image(prompt: str, ctx: McpContext, **given: Any) -> CallToolResult:
        overrides = to_config({k: v for k, v in given.items() if v is not None})
        try:
            cfg = make_config(base, **overrides)
            result = await bounded(ctx, step_budget(cfg), prompt, lambda on_event, run_dir: aguide(
                prompt, mllm=mllm, generator=generator, config=cfg, run_dir=run_dir, settings=settings,
                mllm_options=mllm_options, generator_options=generator_options, on_event=on_event))
        except GuidanceError as exc:
            raise failure(exc) from None
        content, artifact = tool_output(result)
        return CallToolResult(
            content=[TextContent(type="text", text=content[0]["text"]),
                     ImageContent(type="image", data=content[1]["base64"], mimeType="image/png")],
            structuredContent=artifact,
        )

    generate_tool(with_knobs(generate_image, knob_model(limits, PAUSING),
                             Annotated[str, Field(description="What the image must show, in one or two sentences.")],
                             Annotated[CallToolResult, GenerateOutput]))

    plan_tool = server.tool(
        title="Plan the layout of an image",
        description="Plan the layout (objects with boxes) an image of the prompt should have, without rendering "
                    "it; returns the boxes and a sketch preview.",
        annotations=ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=False, openWorldHint=True),
    )

    async def plan_layout(prompt: str, ctx: McpContext, correct_rounds: int | None = None) -> CallToolResult:
        correct_rounds = base.correct_limit if correct_rounds is None else correct_rounds
        try:
            planned = await bounded(ctx, 1 + correct_rounds, prompt, lambda on_event, run_dir: aplan(
                prompt, mllm, correct_rounds=correct_rounds, config=base, run_dir=run_dir,
                mllm_options=mllm_options, settings=settings))
        except GuidanceError as exc:
            raise failure(exc) from None
        content, artifact = tool_output(planned.result)
        layout = planned.layout
        return CallToolResult(
            content=[TextContent(type="text", text=layout.to_lines() if layout else "(no layout)"),
                     ImageContent(type="image", data=content[1]["base64"], mimeType="image/png")],
            structuredContent={"layout": artifact["layout"], "warnings": planned.warnings,
                               "preview_path": planned.preview_path},
        )

    plan_tool(with_knobs(plan_layout, knob_model(limits, PAUSING), Annotated[str, Field(description="What the image must show.")],
                         Annotated[CallToolResult, PlanOutput], only=("correct_rounds",)))

    return server


def with_knobs(fn: Any, knobs: type[BaseModel], prompt: Any, returns: Any, only: tuple[str, ...] | None = None) -> Any:
    """``fn(prompt, ctx, **knobs)`` with a signature naming each knob (its type, bounds and help from
    the shared knob model): the SDK makes the tool's input schema from it."""
    params = [inspect.Parameter("prompt", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=prompt),
              inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=McpContext)]
    for name, field in knobs.model_fields.items():
        if only is None or name in only:
            annotation = Annotated[field.annotation, *field.metadata, Field(description=field.description)]
            params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation))
    fn.__signature__ = inspect.Signature(params, return_annotation=returns)
    fn.__annotations__ = {p.name: p.annotation for p in params} | {"return": returns}
    return fn


def step_budget(cfg: GuidanceConfig) -> int:
    """The most steps a run reports (the call budget of the method, plus the final step): progress
    reaches it when the run ends, earlier when the image is good sooner."""
    k = cfg.max_align_rounds
    if cfg.mode == "plain":
        return 2
    return 1 + cfg.correct_limit + (k + 1) + (k + 1) + k + (k if cfg.judge_mode == "pairwise" else 0) + 1
