"""The LangChain tool inside a real LangChain agent driven by a fake tool-calling model."""

import asyncio
from pathlib import Path

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage

from mllm_guidance.knobs import KNOBS
from mllm_guidance import as_tool
from tests.fakes import PLACE, RecordingChatModel, score

PROMPT = "A man is sitting under a tree while a bird is in the tree."


class ToolCallingFake(GenericFakeChatModel):
    def bind_tools(self, tools, **kwargs):
        return self


def planner():
    return RecordingChatModel(replies={"place": [PLACE], "self_correct": [PLACE], "reason": [score(5)]})


def test_schema_and_output(tmp_path):
    tool = as_tool(mllm=planner(), generator="sketch", runs_dir=tmp_path)
    assert tool.name == "generate_image" and tool.response_format == "content_and_artifact"
    assert list(tool.args)[0] == "prompt" and set(tool.args) == {"prompt"} | set(KNOBS) - {"review"}
    assert tool.args["max_rounds"]["anyOf"][0]["maximum"] == 20
    message = tool.invoke({"type": "tool_call", "id": "c1", "name": "generate_image", "args": {"prompt": PROMPT, "seed": 4}})
    assert isinstance(message, ToolMessage)
    [text] = message.content  # text only by default: every provider accepts it
    assert "scored 5/5" in text["text"] and message.artifact["image_base64"].startswith("iVBOR")
    with_image = as_tool(mllm=planner(), generator="sketch", runs_dir=tmp_path, image="content").invoke(
        {"type": "tool_call", "id": "c0", "name": "generate_image", "args": {"prompt": PROMPT, "seed": 4}})
    assert with_image.content[1]["type"] == "image" and with_image.content[1]["base64"].startswith("iVBOR")
    art = message.artifact
    assert art["score"] == 5 and art["rounds"] == 1 and art["layout"][0]["name"] == "a man sitting"
    assert Path(art["image_path"]).exists() and Path(art["image_path"]).is_relative_to(tmp_path.resolve())


def test_inside_an_agent(tmp_path):
    calls = iter([
        AIMessage(content="", tool_calls=[{"name": "generate_image", "args": {"prompt": PROMPT, "max_rounds": 2}, "id": "call-1"}]),
        AIMessage(content="Here is your picture."),
    ])
    agent = create_agent(ToolCallingFake(messages=calls), [as_tool(mllm=planner(), generator="sketch", runs_dir=tmp_path)])
    out = agent.invoke({"messages": [("user", "Draw a man under a tree with a bird in it")]})
    tool_messages = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert len(tool_messages) == 1 and tool_messages[0].artifact["score"] == 5
    assert "Saved at" in str(tool_messages[0].content) and tool_messages[0].artifact["image_base64"]
    assert out["messages"][-1].content == "Here is your picture."


def test_async_and_errors_reach_the_agent_as_text(tmp_path):
    tool = as_tool(mllm=planner(), generator="sketch", runs_dir=tmp_path)
    message = asyncio.run(tool.ainvoke({"type": "tool_call", "id": "c2", "name": "generate_image", "args": {"prompt": PROMPT}}))
    assert message.artifact["score"] == 5
    bad = tool.invoke({"type": "tool_call", "id": "c3", "name": "generate_image", "args": {"prompt": "!!!"}})
    assert "no words" in str(bad.content)


def test_an_agents_two_parallel_calls_share_one_pipeline(tmp_path):
    """Issue 15, item 1: an agent making two tool calls at once on one tiny GLIGEN pipeline (both
    ToolMessages were errors when the scheduler's state was shared): both succeed, each image the
    one a lone run with its seed makes."""
    import base64

    import pytest

    pytest.importorskip("diffusers")
    from mllm_guidance import guide
    from mllm_guidance.backends.gligen import GligenGenerator
    from tests.backends.tiny_diffusion import build_tiny_gligen

    gligen = GligenGenerator(str(build_tiny_gligen(tmp_path / "g")), steps=2)
    config = {"width": 64, "height": 64, "self_correct": False}

    def model():
        return RecordingChatModel(replies={"place": [PLACE] * 2, "reason": [score(5)] * 2})

    calls = iter([
        AIMessage(content="", tool_calls=[
            {"name": "generate_image", "args": {"prompt": PROMPT, "seed": 1}, "id": "a"},
            {"name": "generate_image", "args": {"prompt": PROMPT, "seed": 2}, "id": "b"}]),
        AIMessage(content="Two pictures."),
    ])
    tool = as_tool(mllm=model(), generator=gligen, config=config, runs_dir=tmp_path / "runs")
    out = asyncio.run(create_agent(ToolCallingFake(messages=calls), [tool]).ainvoke(
        {"messages": [("user", "Draw it twice")]}))
    results = {m.tool_call_id: m for m in out["messages"] if isinstance(m, ToolMessage)}
    assert set(results) == {"a", "b"} and all(m.status == "success" for m in results.values())
    for call_id, seed in (("a", 1), ("b", 2)):
        lone = guide(PROMPT, mllm=model(), generator=gligen, config={**config, "seed": seed}, run_dir=tmp_path / f"lone{seed}")
        assert base64.b64decode(results[call_id].artifact["image_base64"]) == lone.image_path.read_bytes()
