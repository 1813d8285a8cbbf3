"""MLLM Guidance as an MCP server: ``mllm-guidance mcp`` (stdio) or ``mllm-guidance mcp --http``.

Tools:
- ``generate_image(prompt, max_rounds?, seed?, mode?)``: the image as MCP image content, a text
  summary, and structured data (image path, score, rounds, layout, run directory).
- ``plan_layout(prompt, correct_rounds?)``: the planned layout as text and structured data, with
  a sketch preview image.

Tools return ``CallToolResult`` objects on purpose: a return annotation such as a pydantic model
would make the SDK serialize everything, image included, into JSON text. (This module imports
the ``mcp`` package: install the ``mcp`` extra.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcp.server.fastmcp import FastMCP
from mcp.types import CallToolResult, ImageContent, TextContent

from mllm_guidance.api import aguide, aplan, default_run_dir
from mllm_guidance.config import GuidanceConfig, make_config
from mllm_guidance.errors import GuidanceError
from mllm_guidance.tool import tool_output


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
) -> FastMCP:
    base = make_config(config)
    server = FastMCP(
        "mllm-guidance",
        instructions="Generate images that show exactly what a prompt describes, or plan their layouts.",
        host=host,
        port=port,
    )

    def failure(exc: GuidanceError) -> CallToolResult:
        return CallToolResult(content=[TextContent(type="text", text=f"error: {exc}")], isError=True)

    def run_dir(prompt: str) -> Path:
        return Path(runs_dir) / default_run_dir(prompt).name

    @server.tool(description="Generate an image that shows exactly what the prompt describes (objects, "
                             "attributes, spatial relations, interactions); returns the image and its 1-5 score.")
    async def generate_image(prompt: str, max_rounds: int | None = None, seed: int | None = None,
                             mode: str | None = None) -> CallToolResult:
        overrides = {k: v for k, v in {"max_align_rounds": max_rounds, "seed": seed, "mode": mode}.items() if v is not None}
        try:
            result = await aguide(prompt, mllm=mllm, generator=generator, config=make_config(base, **overrides),
                                  run_dir=run_dir(prompt), mllm_options=mllm_options, generator_options=generator_options)
        except GuidanceError as exc:
            return failure(exc)
        content, artifact = tool_output(result)
        return CallToolResult(
            content=[TextContent(type="text", text=content[0]["text"]),
                     ImageContent(type="image", data=content[1]["base64"], mimeType="image/png")],
            structuredContent=artifact,
        )

    @server.tool(description="Plan the layout (objects with boxes) an image of the prompt should have, "
                             "without rendering it; returns the boxes and a sketch preview.")
    async def plan_layout(prompt: str, correct_rounds: int = 5) -> CallToolResult:
        try:
            planned = await aplan(prompt, mllm, correct_rounds=correct_rounds, config=base, run_dir=run_dir(prompt),
                                  mllm_options=mllm_options)
        except GuidanceError as exc:
            return failure(exc)
        content, artifact = tool_output(planned.result)
        layout = planned.layout
        return CallToolResult(
            content=[TextContent(type="text", text=layout.to_lines() if layout else "(no layout)"),
                     ImageContent(type="image", data=content[1]["base64"], mimeType="image/png")],
            structuredContent={"layout": artifact["layout"], "warnings": planned.warnings,
                               "preview_path": planned.preview_path},
        )

    return server
