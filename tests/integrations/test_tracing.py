"""Traces carry metadata and no image data; trace show prints the rounds."""

import json

from langchain_core.tracers.langchain import LangChainTracer

from mllm_guidance import guide
from mllm_guidance.cli import main
from mllm_guidance.evidence.tracing import image_safe_client, strip_images, trace_rows
from tests.fakes import ALIGNED, PLACE, RecordingChatModel, score
from tests.stubs import StubServer

PROMPT = "A man is sitting under a tree while a bird is in the tree."


def test_strip_images_keeps_everything_but_the_bytes():
    b64 = "iVBORw0KGgo" + "A" * 5000
    payload = {"messages": [[{"type": "constructor", "kwargs": {"content": [
        {"type": "text", "text": "User prompt: a cat"},
        {"type": "image", "base64": b64, "mime_type": "image/png"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64}},
    ]}}]], "raw": b"\x89PNG", "short": "iVBOR"}
    out = strip_images(payload)
    text = json.dumps(out)
    assert b64 not in text and "User prompt: a cat" in text and "image/png" in text
    assert out["raw"] == "<4 bytes omitted>" and out["short"] == "iVBOR"


def test_langsmith_payloads_have_metadata_and_no_image_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    with StubServer(lambda path, body: (200, {})) as stub:
        client = image_safe_client(api_url=stub.url, api_key="ls-test-key", auto_batch_tracing=False)
        tracer = LangChainTracer(client=client, project_name="mllm-guidance-tests")
        model = RecordingChatModel(replies={"place": [PLACE], "self_correct": [PLACE], "reason": [score(3), score(5)], "align": [ALIGNED]})
        guide(PROMPT, mllm=model, generator="sketch", run_dir=tmp_path / "run", callbacks=[tracer])
        tracer.wait_for_futures()
        client.flush() if hasattr(client, "flush") else None
    bodies = [json.dumps(b) for path, _, b in stub.requests if path.startswith("/runs")]
    assert len(bodies) > 10
    everything = "\n".join(bodies)
    assert "iVBOR" not in everything and "image omitted" in everything
    assert "mllm_guidance_mode" in everything and "thread_id" in everything and '"mode:full"' in everything
    chat_runs = [b for b in bodies if "mllm_guidance.reason" in b]
    assert chat_runs, "the reason step's chat model call was traced"


def test_trace_show(tmp_path, capsys):
    model = RecordingChatModel(replies={"place": [PLACE], "self_correct": [PLACE], "reason": [score(3), score(5)], "align": [ALIGNED]})
    guide(PROMPT, mllm=model, generator="sketch", run_dir=tmp_path / "run")
    rows = trace_rows(json.loads((tmp_path / "run" / "run.json").read_text()))
    assert [(r["step"], r["round"]) for r in rows] == [("place", 0), ("self_correct", 0), ("generate", 0), ("reason", 0),
                                                       ("align", 0), ("generate", 1), ("reason", 1)]
    assert rows[3]["score"] == 3 and rows[3]["tokens"] == 120 and rows[4]["change"].startswith("+1 added (a bird perched on a branch); -1 removed (a bird)")
    assert main(["trace", "show", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "stop good" in out and any(line.split()[:2] == ["reason", "1"] for line in out.splitlines() if line.strip())
    assert main(["trace", "show", str(tmp_path / "nope")]) == 2
