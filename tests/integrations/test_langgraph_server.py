"""The exported server graph in process, and `langgraph dev` (in-memory server) over HTTP."""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_cli import PROMPT, RECORDING

ROOT = Path(__file__).resolve().parents[2]


def test_the_exported_graph_has_no_checkpointer_and_runs_on_string_settings(tmp_path):
    from mllm_guidance.server import ServerContext, graph

    assert graph.checkpointer is None
    out = graph.invoke({"prompt": PROMPT, "seed": 0},
                       context=ServerContext(mllm=f"replay:{RECORDING}", generator="sketch", runs_dir=str(tmp_path)))
    assert out["stop_reason"] == "good" and len(out["rounds"]) == 3
    run_dirs = list(tmp_path.iterdir())
    assert len(run_dirs) == 1 and (run_dirs[0] / "final.png").exists() and (run_dirs[0] / "report.html").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: dict | None = None, timeout: float = 60) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


@pytest.mark.skipif(shutil.which("langgraph") is None, reason="langgraph-cli[inmem] is not installed")
def test_langgraph_dev_runs_the_graph_over_http(tmp_path):
    port = free_port()
    env = {**os.environ, "MLLM_GUIDANCE_MLLM": f"replay:{RECORDING}", "MLLM_GUIDANCE_GENERATOR": "sketch",
           "MLLM_GUIDANCE_RUNS_DIR": str(tmp_path / "runs"), "LANGSMITH_TRACING": "false",
           "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGCHAIN_TRACING_V2": "false"}
    server = subprocess.Popen(["langgraph", "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser",
                               "--no-reload", "--config", str(ROOT / "langgraph.json")],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                http("GET", f"{base}/ok", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    server.kill()
                    pytest.fail("langgraph dev did not start:\n" + (server.stdout.read() if server.stdout else ""))
                time.sleep(0.5)
        thread = http("POST", f"{base}/threads", {})
        state = http("POST", f"{base}/threads/{thread['thread_id']}/runs/wait",
                     {"assistant_id": "mllm_guidance", "input": {"prompt": PROMPT, "seed": 0},
                      "context": {"generator": "sketch"}}, timeout=120)
        assert state["stop_reason"] == "good" and state["best"] == 2, state
        assert state["final_image"]["path"] == "final.png" and "base64" not in json.dumps(state)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
