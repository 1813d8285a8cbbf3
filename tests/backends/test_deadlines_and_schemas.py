"""Issue 10, item 9: the whole-call deadline against a trickling server, and a structured
answer that does not fit the schema, retried like any unreadable answer."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mllm_guidance import guide
from mllm_guidance.errors import BackendError
from tests.fakes import RecordingChatModel, score


class Trickler:
    """An OpenAI-compatible endpoint that sends its headers at once, then one byte of a valid
    answer every ``gap`` seconds: each read arrives well within any per-read timeout."""

    def __init__(self, gap: float = 0.3) -> None:
        body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "gpt-4o",
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "Objects:\n- a cat [0.1, 0.1, 0.5, 0.5]"}}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
        self.calls = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                stub.calls += 1
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                try:
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(gap)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_timeout_bounds_the_whole_call_not_each_read(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0000000000000000000000")
    stub = Trickler()
    try:
        started = time.perf_counter()
        with pytest.raises(BackendError, match="did not answer in time") as info:
            guide("a cat on a mat", mllm="openai:gpt-4o", generator="sketch", run_dir=tmp_path / "run",
                  mllm_options={"base_url": stub.url, "timeout": 1.5, "retries": 1, "retry_base_delay": 0.0})
        elapsed = time.perf_counter() - started
    finally:
        stub.close()
    assert stub.calls == 2  # one try and one retry, each cut at 1.5 s
    assert elapsed < 2 * 1.5 + 3  # not the minute a byte every 0.3 s would take
    assert "--mllm-timeout" in str(info.value)


def test_a_structured_answer_that_misses_the_schema_is_asked_again(tmp_path):
    """With structured output, an answer whose arguments do not fit the schema is an unreadable
    answer: asked again with the reason, the run goes on."""
    bad = {"reasoning": "left", "objects": [{"name": "a cat", "box": "left half"}]}  # a box that is not numbers
    good = {"reasoning": "left", "objects": [{"name": "a cat", "box": [0.1, 0.1, 0.5, 0.5]}]}
    model = RecordingChatModel(replies={"place": [bad, good], "reason": [score(5)]})
    result = guide("a cat on a mat", mllm=model, generator="sketch", run_dir=tmp_path / "run",
                   config={"self_correct": False}, settings={"structured_steps": ["place"]})
    assert model.steps().count("place") == 2 and result.score == 5
    assert result.rounds[0].layout.names == ["a cat"]
