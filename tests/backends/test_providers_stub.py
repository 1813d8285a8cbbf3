"""Gemini (google-genai) and Ollama through the whole graph, against local stubs of their APIs."""

import base64

import pytest

from mllm_guidance import guide
from mllm_guidance.backends.mllm import resolve_mllm
from mllm_guidance.errors import BackendError
from tests.stubs import PLANNER_ANSWERS, StubServer, step_in

PROMPT = "A man is sitting under a tree while a bird is in the tree."


def gemini(path, body):
    text = PLANNER_ANSWERS[step_in(body)]
    return 200, {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
                 "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 9, "totalTokenCount": 59}}


def ollama(path, body):
    text = PLANNER_ANSWERS[step_in(body)]
    head = {"model": body["model"], "created_at": "2025-01-01T00:00:00Z"}
    return 200, [{**head, "message": {"role": "assistant", "content": text}, "done": False},
                 {**head, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                  "prompt_eval_count": 40, "eval_count": 8}]


def test_gemini_sends_the_image_inline_and_never_goes_to_vertex(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-key-not-real")
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with StubServer(gemini) as stub:
        result = guide(PROMPT, mllm="gemini-2.5-flash", generator="sketch", run_dir=tmp_path / "g",
                       mllm_options={"base_url": stub.url})
    # behaviour, not the SDK's URL layout: every call reached this server for this model, with the
    # API key (Vertex AI would address a project and location and authenticate otherwise)
    assert len(stub.requests) == result.usage.mllm_calls == 3
    assert all("gemini-2.5-flash" in p and "/projects/" not in p for p, _, _ in stub.requests)
    assert all(h.get("x-goog-api-key") == "AIza-test-key-not-real" for _, h, _ in stub.requests)
    reason = next(b for _, _, b in stub.requests if step_in(b) == "reason")
    parts = reason["contents"][-1]["parts"]
    inline = [p["inlineData"] for p in parts if "inlineData" in p]
    mime = [d.get("mime_type") or d.get("mimeType") for d in inline]
    assert mime == ["image/jpeg"] and base64.urlsafe_b64decode(inline[0]["data"])[:3] == b"\xff\xd8\xff"  # a JPEG
    assert "You evaluate" in str(reason.get("systemInstruction") or reason.get("system_instruction"))
    assert result.score == 5 and result.usage.input_tokens == 150 and result.usage.output_tokens == 27


def test_gemini_rate_limit_is_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-test-key-not-real")
    answers = iter([(429, {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}})])
    with StubServer(lambda p, b: next(answers, None) or gemini(p, b)) as stub:
        result = guide(PROMPT, mllm="google_genai:gemini-2.5-flash", generator="sketch", run_dir=tmp_path / "g",
                       mllm_options={"base_url": stub.url, "retry_base_delay": 0.01})
    assert result.score == 5 and len(stub.requests) == 4


def test_ollama_sends_the_image_in_the_images_field(tmp_path):
    with StubServer(ollama) as stub:
        result = guide(PROMPT, mllm="ollama:gemma3:27b", generator="sketch", run_dir=tmp_path / "o",
                       mllm_options={"base_url": stub.url})
    assert {p for p, _, _ in stub.requests} == {"/api/chat"}
    reason = next(b for _, _, b in stub.requests if step_in(b) == "reason")
    assert reason["model"] == "gemma3:27b"
    user = reason["messages"][-1]
    assert user["images"] and user["images"][0].startswith("/9j/")
    assert result.score == 5 and result.usage.input_tokens == 120


def test_ollama_not_running(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = resolve_mllm("ollama:gemma3:27b", base_url=f"http://127.0.0.1:{port}", timeout=2, retries=1,
                         retry_base_delay=0.01)
    with pytest.raises(BackendError, match="cannot reach ChatOllama\\(gemma3:27b\\) at http://127.0.0.1"):
        guide(PROMPT, mllm=model, generator="sketch", run_dir=tmp_path / "o")
