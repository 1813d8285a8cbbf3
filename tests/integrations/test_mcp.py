"""The MCP server through an in-memory MCP client and through LangChain's MCP adapters."""

import asyncio
import base64

import pytest

pytest.importorskip("mcp")

from mcp.shared.memory import create_connected_server_and_client_session  # noqa: E402

from mllm_guidance.mcp_server import create_server  # noqa: E402
from tests.fakes import PLACE, RecordingChatModel, score  # noqa: E402

PROMPT = "A man is sitting under a tree while a bird is in the tree."


def planner():
    return RecordingChatModel(replies={"place": [PLACE, PLACE], "self_correct": [PLACE, PLACE], "reason": [score(5)]})


def test_generate_image_arrives_as_image_content(tmp_path):
    server = create_server(mllm=planner(), generator="sketch", runs_dir=tmp_path)

    async def go():
        async with create_connected_server_and_client_session(server._mcp_server) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert set(tools) == {"generate_image", "plan_layout"}
            result = await client.call_tool("generate_image", {"prompt": PROMPT, "seed": 2})
            plan = await client.call_tool("plan_layout", {"prompt": PROMPT, "correct_rounds": 1})
            bad = await client.call_tool("generate_image", {"prompt": "   "})
            return result, plan, bad

    result, plan, bad = asyncio.run(go())
    assert not result.isError
    text, image = result.content
    assert text.type == "text" and "scored 5/5" in text.text
    assert image.type == "image" and image.mimeType == "image/png"
    assert base64.b64decode(image.data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.structuredContent["score"] == 5 and result.structuredContent["layout"][1]["name"] == "a tree"
    assert plan.content[0].text.startswith("- a man sitting [") and plan.content[1].type == "image"
    assert plan.structuredContent["layout"][0]["box"] == [0.1, 0.45, 0.45, 0.95]
    assert bad.isError and "prompt is empty" in bad.content[0].text


def test_through_langchain_mcp_adapters(tmp_path):
    adapters = pytest.importorskip("langchain_mcp_adapters.tools")
    server = create_server(mllm=planner(), generator="sketch", runs_dir=tmp_path)

    async def go():
        async with create_connected_server_and_client_session(server._mcp_server) as client:
            tools = {t.name: t for t in await adapters.load_mcp_tools(client)}
            return await tools["generate_image"].ainvoke(
                {"type": "tool_call", "id": "t1", "name": "generate_image", "args": {"prompt": PROMPT}})

    message = asyncio.run(go())
    blocks = message.content if isinstance(message.content, list) else [message.content]
    kinds = [b.get("type") if isinstance(b, dict) else "text" for b in blocks]
    assert "image" in kinds or "image_url" in kinds
    assert "scored 5/5" in str(blocks[0])


def test_the_mcp_command_over_stdio(tmp_path):
    import shutil
    import sys

    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from tests.test_cli import RECORDING

    exe = shutil.which("mllm-guidance")
    command, args = (exe, []) if exe else (sys.executable, ["-m", "mllm_guidance.cli"])
    params = StdioServerParameters(command=command, args=args + [
        "mcp", "--mllm", f"replay:{RECORDING}", "--generator", "sketch", "--runs-dir", str(tmp_path)], cwd=str(tmp_path))

    async def go():
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            return await asyncio.wait_for(client.call_tool("generate_image", {"prompt": PROMPT}), 60)

    result = asyncio.run(go())
    assert result.structuredContent["score"] == 5 and result.content[1].type == "image"
