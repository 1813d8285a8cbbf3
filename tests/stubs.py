"""A scriptable HTTP server on 127.0.0.1 that stands in for a provider's API in tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[Any, ...]  # (status, JSON body or list of JSON lines for NDJSON[, extra headers])


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 for one ``with`` block: the stubs' shared start, address and stop."""

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Any:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class StubServer(LocalServer):
    """Answers every POST with ``respond(path, body)``; records every request."""

    def __init__(self, respond: Callable[[str, dict[str, Any]], Reply], delay: Callable[[int], float] = lambda n: 0.0) -> None:
        self.respond, self.delay = respond, delay
        self.requests: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self._answer({})

            def do_PATCH(self) -> None:  # noqa: N802
                self.do_POST()

            def _answer(self, payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
                """JSON, or NDJSON for a list of lines; a client that gave up (timeout tests) is fine."""
                if isinstance(payload, list):
                    data = b"".join(json.dumps(line).encode() + b"\n" for line in payload)
                    ctype = "application/x-ndjson"
                else:
                    data, ctype = json.dumps(payload).encode(), "application/json"
                try:
                    self.send_response(status)
                    self.send_header("content-type", ctype)
                    self.send_header("content-length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length) or b"{}"
                try:
                    body = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    body = {"_raw": raw.decode("latin-1")}
                stub.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                wait = stub.delay(len(stub.requests))
                if wait:
                    time.sleep(wait)
                status, payload, *headers = stub.respond(self.path, body)
                self._answer(payload, status, headers[0] if headers else None)

        self.serve(Handler)


def openai_completion(text: str, prompt_tokens: int = 120, completion_tokens: int = 15) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }


def openai_error(status: int, message: str) -> Reply:
    return status, {"error": {"message": message, "type": "stub_error", "code": None}}


def step_of(system_text: str) -> str:
    """Which step a request is for, from the start of the built-in instructions."""
    for prefix, step in (("You plan", "place"), ("You adjust", "self_correct"), ("You evaluate", "reason"), ("You align", "align")):
        if system_text.startswith(prefix):
            return step
    return "?"


PLANNER_ANSWERS = {
    "place": "Objects:\n- a man sitting [0.1, 0.5, 0.45, 0.95]\n- a tree [0.35, 0.05, 0.95, 0.9]\n- a bird [0.6, 0.15, 0.75, 0.3]",
    "self_correct": "Reasoning: fine.\nUpdated objects:\n- a man sitting [0.1, 0.5, 0.45, 0.95]\n- a tree [0.35, 0.05, 0.95, 0.9]\n- a bird [0.6, 0.15, 0.75, 0.3]",
    "reason": "Reasoning: the man sits under the tree and the bird is in it.\nScore: 5",
    "align": "Reasoning: matches.\nUpdated objects:\n",
}


def step_in(body: dict[str, Any]) -> str:
    """Which step a request of any provider's shape is for."""
    text = json.dumps(body)
    for prefix, step in (("You plan", "place"), ("You adjust", "self_correct"), ("You evaluate", "reason"), ("You align", "align")):
        if prefix in text:
            return step
    return "?"
