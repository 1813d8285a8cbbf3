"""MLLM Guidance as a LangChain tool, for agents.

    tool = as_tool(mllm="openai:gpt-4o", generator="gligen-xl")
    agent = create_agent("openai:gpt-4o", [tool])

The tool answers with ``content_and_artifact``. What the calling model may receive inside a tool
result differs by provider, so the image travels one of three ways (``image=``):

- ``"artifact"`` (default, every provider): the content is text (summary, score, the image's path);
  the image (base64 PNG) is in the artifact with the image path, score, rounds, layout and run
  directory, for code, never sent to the model;
- ``"content"``: the image is also an image block inside the tool result. Anthropic's Claude takes
  images in tool results, and LangChain's Gemini integration sends them as an inline part beside the
  function response; OpenAI's Chat Completions refuses images in ``role: tool`` messages (400
  "Image URLs are only allowed for messages with role 'user'");
- ``image_middleware()`` for ``create_agent``: the model sees the picture on every provider. It
  keeps the default text result and, in each model request, follows the tool result with a user
  message holding the image (the agent's state is unchanged).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import StructuredTool, ToolException
from pydantic import BaseModel, Field, create_model

from mllm_guidance.api import GuidanceResult, aguide, default_run_dir
from mllm_guidance.background import run_sync
from mllm_guidance.config import GuidanceConfig, make_config
from mllm_guidance.errors import ConfigError, GuidanceError
from mllm_guidance.run_settings import RunSettings
from mllm_guidance.knobs import PAUSING, KnobLimits, knob_model, to_config

DESCRIPTION = (
    "Generate an image that shows exactly what the prompt describes: objects, attributes, counts, "
    "spatial relations and interactions. A multimodal model plans a layout, checks the generated "
    "image and re-plans until it matches. Returns the image and its 1-5 alignment score."
)


def args_schema(limits: KnobLimits | None = None) -> type[BaseModel]:
    """The tool's arguments: the prompt and the knobs every face shares (``knobs.py``), under the
    given limits; review is left out (an agent's tool call has nobody to answer a pause)."""
    knobs = knob_model(limits or KnobLimits(), PAUSING)
    fields: dict[str, Any] = {"prompt": (str, Field(description="What the image must show, in one or two sentences."))}
    fields |= {name: (field.annotation, field) for name, field in knobs.model_fields.items()}
    return create_model("GenerateImageArgs", __doc__="Arguments of the image tool.", **fields)


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
    image: Literal["artifact", "content"] = "artifact",
    limits: KnobLimits | None = None,
    settings: RunSettings | dict[str, Any] | None = None,
) -> StructuredTool:
    """A structured tool (sync and async) that runs MLLM Guidance; every call gets its own run
    directory under ``runs_dir``. ``image``: how the picture travels (module docstring); ``limits``:
    how far the calling model may turn the knobs (default: K at most 20, ``knobs.KnobLimits``)."""
    if image not in ("artifact", "content"):
        raise ConfigError(f"image={image!r}: choose 'artifact' (every provider) or 'content' (Claude)")
    base = make_config(config)

    schema = args_schema(limits)

    def run_options(prompt: str, knobs: dict[str, Any]) -> dict[str, Any]:
        return {
            "config": make_config(base, **to_config(knobs)), "settings": settings,
            "run_dir": Path(runs_dir) / default_run_dir(prompt).name,
            "mllm": mllm, "generator": generator,
            "mllm_options": mllm_options, "generator_options": generator_options,
        }

    def run(prompt: str, **knobs: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        return run_sync(arun(prompt, **knobs))

    async def arun(prompt: str, **knobs: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        try:
            content, artifact = tool_output(await aguide(prompt, **run_options(prompt, knobs)))
        except GuidanceError as exc:
            raise ToolException(str(exc)) from exc
        artifact["image_base64"] = content[1]["base64"]
        return (content if image == "content" else content[:1]), artifact

    return StructuredTool.from_function(
        func=run, coroutine=arun, name=name, description=description, args_schema=schema,
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
    if not isinstance(result, GuidanceResult):  # a run paused for a person: tools have nobody to ask
        raise ConfigError("this run paused for review, which tools and servers cannot answer; set review to off")
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


def image_middleware(tool_name: str = "generate_image") -> Any:
    """``create_agent`` middleware that lets the model see the images ``tool_name`` made, on any
    provider: in each model request, every result of that tool is followed by a user message
    holding its image (from the artifact). The agent's state keeps the text results only.

        agent = create_agent("openai:gpt-4o", [as_tool(...)], middleware=[image_middleware()])
    """
    from langchain.agents.middleware import AgentMiddleware

    def with_images(messages: list[Any]) -> list[Any]:
        out: list[Any] = []
        for message in messages:
            out.append(message)
            artifact = getattr(message, "artifact", None) if isinstance(message, ToolMessage) else None
            if message_is_ours(message) and isinstance(artifact, dict) and artifact.get("image_base64"):
                out.append(HumanMessage(content=[
                    {"type": "text", "text": f"The image {tool_name} returned ({artifact.get('image_path')}):"},
                    {"type": "image", "base64": artifact["image_base64"], "mime_type": "image/png"},
                ]))
        return out

    def message_is_ours(message: Any) -> bool:
        return isinstance(message, ToolMessage) and message.name == tool_name

    class ImagesAsUserMessages(AgentMiddleware):
        def wrap_model_call(self, request: Any, handler: Any) -> Any:
            return handler(request.override(messages=with_images(request.messages)))

        async def awrap_model_call(self, request: Any, handler: Any) -> Any:
            return await handler(request.override(messages=with_images(request.messages)))

    return ImagesAsUserMessages()
