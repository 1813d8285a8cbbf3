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

    from tests.cli.test_cli import RECORDING

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


# -- what standard clients wait for and read (issue 15, item 4), and the server's bounds ----------


def test_over_stdio_with_progress_logs_schemas_and_the_package_version(tmp_path):
    """The `mcp` client over stdio, as Claude Desktop or the Inspector connect: the tool list
    describes every parameter, offers mode as an enum, states the output schema and annotations;
    a call sends progress notifications and log messages while it runs."""
    import os
    import sys

    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    from mllm_guidance import __version__
    from tests.cli.test_cli import RECORDING

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mllm_guidance", "mcp", "--mllm", f"replay:{RECORDING}", "--generator", "sketch",
              "--runs-dir", str(tmp_path / "runs")],
        env={**os.environ, "LANGSMITH_TRACING": "false"})
    progress, logs = [], []

    async def on_log(message):
        logs.append(message.data)

    async def go():
        async with stdio_client(params) as (read, write), ClientSession(read, write, logging_callback=on_log) as client:
            init = await client.initialize()
            tools = {t.name: t for t in (await client.list_tools()).tools}

            async def on_progress(done, total, message):
                progress.append((done, total, message))

            result = await client.call_tool("generate_image", {"prompt": PROMPT, "seed": 0},
                                            progress_callback=on_progress)
            return init, tools, result

    init, tools, result = asyncio.run(go())
    assert init.serverInfo.version == __version__
    gen = tools["generate_image"]
    props = gen.inputSchema["properties"]
    assert all(p.get("description") for p in props.values()), props
    mode = props["mode"]
    assert any(a.get("enum") == ["plain", "place", "place+correct", "align", "full"] for a in mode.get("anyOf", [mode]))
    assert {"image_path", "score", "layout", "run_dir"} <= set(gen.outputSchema["properties"])
    assert gen.annotations.readOnlyHint is False and tools["plan_layout"].annotations.readOnlyHint is True
    assert not result.isError and result.structuredContent["score"] == 5
    assert len(progress) >= 8 and progress[-1][2].startswith("done: best round 2")
    assert [p[0] for p in progress] == sorted(p[0] for p in progress) and all(p[1] for p in progress)
    assert any("scored 3/5" in str(m) for m in logs)


def test_concurrent_calls_share_one_tiny_gligen_and_wait_their_turn(tmp_path):
    """Three calls at once on one tiny GLIGEN pipeline, one run at a time: every call succeeds,
    each image equals a lone run's with the same seed, and only the newest run directories stay."""
    pytest.importorskip("diffusers")
    from mllm_guidance import guide
    from mllm_guidance.backends.gligen import GligenGenerator
    from tests.backends.tiny_diffusion import build_tiny_gligen

    gligen = GligenGenerator(str(build_tiny_gligen(tmp_path / "g")), steps=2)
    config = {"width": 64, "height": 64, "self_correct": False}

    def model():
        return RecordingChatModel(replies={"place": [PLACE] * 3, "reason": [score(5)] * 3})

    server = create_server(mllm=model(), generator=gligen, config=config, runs_dir=tmp_path / "runs",
                           max_concurrent=1, keep_runs=2)
    progress = []

    async def go():
        async with create_connected_server_and_client_session(server._mcp_server) as client:
            async def call(seed):
                async def on_progress(done, total, message):
                    progress.append(message)
                return await client.call_tool("generate_image", {"prompt": PROMPT, "seed": seed},
                                              progress_callback=on_progress)
            return await asyncio.gather(*(call(seed) for seed in (1, 2, 3)))

    results = asyncio.run(go())
    assert [r.isError for r in results] == [False, False, False]
    assert any("waiting for a free slot" in m for m in progress)
    for seed, r in zip((1, 2, 3), results, strict=True):
        lone = guide(PROMPT, mllm=model(), generator=gligen, config={**config, "seed": seed},
                     run_dir=tmp_path / f"lone{seed}")
        assert base64.b64decode(r.content[1].data) == lone.image_path.read_bytes()
    assert len(list((tmp_path / "runs").iterdir())) == 2  # keep_runs


def test_pruning_never_removes_a_run_in_flight(tmp_path):
    """Issue 20, item 7: a long run outlives newer ones; pruning removes only finished runs, and
    --keep-runs below --max-concurrent is refused."""
    import threading

    from mllm_guidance.errors import ConfigError
    from tests.fakes import CountingGenerator

    with pytest.raises(ConfigError, match="--keep-runs 1 is below --max-concurrent 4"):
        create_server(mllm=planner(), generator="sketch", runs_dir=tmp_path / "r0", max_concurrent=4, keep_runs=1)

    release = threading.Event()

    class SlowOnTheLongPrompt(RecordingChatModel):
        def _generate(self, messages, stop=None, run_manager=None, **kw):
            if "a long one" in str(messages[-1].content):
                assert release.wait(60), "the long run was never released"
            return super()._generate(messages, stop, run_manager, **kw)

    model = SlowOnTheLongPrompt(replies={"place": [PLACE] * 5, "reason": [score(5)] * 5})
    server = create_server(mllm=model, generator=CountingGenerator(), config={"self_correct": False},
                           runs_dir=tmp_path / "runs", max_concurrent=2, keep_runs=2)

    async def go():
        async with create_connected_server_and_client_session(server._mcp_server) as client:
            long = asyncio.create_task(client.call_tool("generate_image", {"prompt": "a long one: " + PROMPT}))
            await asyncio.sleep(0.5)  # its run directory exists before the quick ones start
            quick = [await client.call_tool("generate_image", {"prompt": PROMPT, "seed": s}) for s in (2, 3, 4)]
            release.set()
            return await long, quick

    long, quick = asyncio.run(go())
    assert [r.isError for r in quick] == [False, False, False]
    assert not long.isError, long.content
    assert len(list((tmp_path / "runs").iterdir())) == 2
