"""The real openai client path against a local stub of the chat-completions API."""

import json

import pytest

from mllm_guidance import guide
from mllm_guidance.cli import main
from mllm_guidance.errors import BackendError
from tests.stubs import PLANNER_ANSWERS, StubServer, openai_completion, openai_error, step_of

PROMPT = "A man is sitting under a tree while a bird is in the tree."
FAST = {"retry_base_delay": 0.01, "retry_max_delay": 0.02}  # MllmOptions: quick backoff for tests


def planner(path, body):
    system = body["messages"][0]["content"]
    return 200, openai_completion(PLANNER_ANSWERS[step_of(system if isinstance(system, str) else system[0]["text"])])


def run(stub, tmp_path, timeout=5.0, **options):
    return guide(PROMPT, mllm="openai:gpt-4o", generator="sketch", run_dir=tmp_path / "run",
                 mllm_options={"base_url": stub.url + "/v1", "timeout": timeout, **FAST, **options})


def test_the_image_reaches_the_request_as_an_image_part_and_usage_is_counted(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with StubServer(planner) as stub:
        result = run(stub, tmp_path)
    paths = {p for p, _, _ in stub.requests}
    assert paths == {"/v1/chat/completions"}
    reason = next(b for _, _, b in stub.requests if step_of(b["messages"][0]["content"]) == "reason")
    assert reason["model"] == "gpt-4o"
    parts = reason["messages"][1]["content"]
    image = next(p for p in parts if p["type"] == "image_url")
    assert image["image_url"]["url"].startswith("data:image/jpeg;base64,/9j/")
    assert parts[0]["text"].startswith("User prompt: " + PROMPT)
    assert result.score == 5 and result.usage.mllm_calls == 3
    assert result.usage.input_tokens == 3 * 120 and result.usage.output_tokens == 3 * 15
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_json["usage"]["by_step"]["reason"]["input_tokens"] == 120
    assert run_json["usage"]["estimated_cost_usd"] == pytest.approx((360 * 2.5 + 45 * 10) / 1e6)


def test_429_then_success_is_retried(tmp_path):
    answers = iter([openai_error(429, "Rate limit reached"), openai_error(503, "overloaded")])

    def respond(path, body):
        return next(answers, None) or planner(path, body)

    events = []
    with StubServer(respond) as stub:
        result = guide(PROMPT, mllm="openai:gpt-4o", generator="sketch", run_dir=tmp_path / "r",
                       mllm_options={"base_url": stub.url + "/v1", **FAST}, on_event=events.append)
    assert result.score == 5 and len(stub.requests) == 3 + 2
    assert [e["kind"] for e in events if e["event"] == "mllm_retry"] == ["rate_limit", "server"]


def test_a_500_storm_fails_clearly_after_the_budget(tmp_path):
    with StubServer(lambda p, b: openai_error(500, "internal error")) as stub:
        with pytest.raises(BackendError, match=r"kept failing after 3 tries \(500\)") as info:
            run(stub, tmp_path, retries=2)
    assert len(stub.requests) == 3 and "place (round 0)" in str(info.value)


def test_auth_and_bad_requests_are_not_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrongkey0123456789abcdefghij")
    with StubServer(lambda p, b: openai_error(401, "Incorrect API key provided: sk-wrongkey0123456789abcdefghij")) as stub:
        with pytest.raises(BackendError, match="rejected the credentials \\(401\\): check OPENAI_API_KEY") as info:
            run(stub, tmp_path)
    assert len(stub.requests) == 1 and "sk-wrongkey" not in str(info.value)
    with StubServer(lambda p, b: openai_error(404, "The model `gpt-9` does not exist")) as stub:
        with pytest.raises(BackendError, match="not found \\(404\\)"):
            run(stub, tmp_path / "b")
    assert len(stub.requests) == 1


def test_a_hung_server_hits_the_timeout(tmp_path):
    with StubServer(planner, delay=lambda n: 3.0) as stub:
        with pytest.raises(BackendError, match="did not answer in time after 2 tries"):
            run(stub, tmp_path, timeout=0.3, retries=1)
    assert len(stub.requests) == 2


def test_an_unreachable_server(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(BackendError, match="cannot reach .*after 2 tries.*is the server running"):
        guide(PROMPT, mllm="openai:gpt-4o", generator="sketch", run_dir=tmp_path / "r",
              mllm_options={"base_url": f"http://127.0.0.1:{port}/v1", "timeout": 2, "retries": 1, **FAST})


def test_the_cli_end_to_end_against_the_stub(tmp_path, capsys):
    with StubServer(planner) as stub:
        code = main(["generate", PROMPT, "--mllm", "openai:gpt-4o", "--mllm-base-url", stub.url + "/v1",
                     "--generator", "sketch", "--out", str(tmp_path / "cli")])
    assert code == 0
    out = capsys.readouterr().out
    assert "score 5/5" in out and "tokens 360 in / 45 out" in out
    spec = json.loads((tmp_path / "cli" / "spec.json").read_text())
    assert spec["mllm"]["options"]["base_url"] == stub.url + "/v1" and spec["mllm"]["name"] == "gpt-4o"


def test_a_planted_key_never_leaves_the_process(tmp_path, monkeypatch):
    key = "sk-proj-PLANTEDKEY0123456789abcdefghijklmnop"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    answers = iter([openai_error(500, f"upstream said: bad key {key}")])
    with StubServer(lambda p, b: next(answers, None) or planner(p, b)) as stub:
        result = run(stub, tmp_path)
        # the key went where it belongs: the Authorization header
        assert stub.requests[0][1]["authorization"] == f"Bearer {key}"
    assert result.score == 5
    for path in (tmp_path / "run").iterdir():
        assert key.encode() not in path.read_bytes(), path.name
    assert key not in result.model_dump_json()
