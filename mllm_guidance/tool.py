"""MLLM Guidance as a LangChain tool, for agents.

    tool = as_tool(mllm="openai:gpt-4o", generator="gligen-xl")
    agent = create_agent("openai:gpt-4o", [tool])

The tool answers with ``content_and_artifact``: the content is a short summary and the image as a
standard image block (the calling model sees the picture); the artifact carries what code needs
(image path, score, rounds, final layout, run directory) without going back into the prompt.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, Field

from mllm_guidance.api import GuidanceResult, aguide, default_run_dir
from mllm_guidance.background import run_sync
from mllm_guidance.config import GuidanceConfig, Mode, make_config
from mllm_guidance.errors import GuidanceError

DESCRIPTION = (
    "Generate an image that shows exactly what the prompt describes: objects, attributes, counts, "
    "spatial relations and interactions. A multimodal model plans a layout, checks the generated "
    "image and re-plans until it matches. Returns the image and its 1-5 alignment score."
)


class GenerateImageArgs(BaseModel):
    """Arguments of the image tool."""

    prompt: str = Field(description="What the image must show, in one or two sentences.")
    max_rounds: int | None = Field(default=None, ge=0, le=10, description="At most this many re-planning rounds (default 5).")
    seed: int | None = Field(default=None, ge=0, description="Seed for a reproducible image.")
    mode: Mode | None = Field(default=None, description="full (default), align, place+correct, place or plain.")


def as_tool(
    mllm: Any = None,
    generator: Any = None,
    config: GuidanceConfig | dict[str, Any] | None = None,
    *,
    runs_dir: str | Path = "runs",
    name: str = "generate_image",
    description: str = DESCRIPTION,
    mllm_options: dict[str, Any] | None = None,
    generator_options: dict[str, Any] | None = None,
) -> StructuredTool:
    """A structured tool (sync and async) that runs MLLM Guidance; every call gets its own run
    directory under ``runs_dir``."""
    base = make_config(config)

    def settings(prompt: str, max_rounds: int | None, seed: int | None, mode: str | None) -> dict[str, Any]:
        overrides = {"max_align_rounds": max_rounds, "seed": seed, "mode": mode}
        return {
            "config": make_config(base, **{k: v for k, v in overrides.items() if v is not None}),
            "run_dir": Path(runs_dir) / default_run_dir(prompt).name,
            "mllm": mllm, "generator": generator,
            "mllm_options": mllm_options, "generator_options": generator_options,
        }

    def run(prompt: str, max_rounds: int | None = None, seed: int | None = None, mode: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return run_sync(arun(prompt, max_rounds, seed, mode))

    async def arun(prompt: str, max_rounds: int | None = None, seed: int | None = None, mode: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        try:
            return tool_output(await aguide(prompt, **settings(prompt, max_rounds, seed, mode)))
        except GuidanceError as exc:
            raise ToolException(str(exc)) from exc

    return StructuredTool.from_function(
        func=run, coroutine=arun, name=name, description=description, args_schema=GenerateImageArgs,
        response_format="content_and_artifact", handle_tool_error=True,
    )


def summary(result: GuidanceResult) -> str:
    score = f"scored {result.score}/5" if result.score is not None else "not scored"
    return (
        f"Generated an image for {result.prompt!r}: {score}, best of {len(result.rounds)} round(s) "
        f"(stop: {result.stop_reason}). Saved at {result.image_path}."
    )


def tool_output(result: GuidanceResult) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(content blocks, artifact) for a finished run."""
    data = base64.b64encode(result.image_path.read_bytes()).decode("ascii")
    content = [{"type": "text", "text": summary(result)}, {"type": "image", "base64": data, "mime_type": "image/png"}]
    layout = result.layout
    artifact = {
        "image_path": str(result.image_path),
        "run_dir": result.run_dir,
        "score": result.score,
        "rounds": len(result.rounds),
        "best_round": result.best_round,
        "stop_reason": result.stop_reason,
        "layout": [{"name": o.name, "box": o.box.as_list()} for o in layout.objects] if layout else None,
    }
    return content, artifact
