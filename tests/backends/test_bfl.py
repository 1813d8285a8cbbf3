"""The ``bfl:`` generator against a 127.0.0.1 stand-in of Black Forest Labs' API that follows the
published request and answer shapes (docs.bfl.ai: submit, poll, signed sample URL, bounding_boxes)."""

from __future__ import annotations

import io
import json
import re
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from mllm_guidance.backends.bfl import BflGenerator, bfl_boxes, nearest_aspect_ratio
from mllm_guidance.backends.generator import GenerationRequest
from mllm_guidance.backends.registry import create_generator
from mllm_guidance.errors import BackendError, ConfigError
from mllm_guidance.layout import Layout
from tests.stubs import LocalServer

KEY = "bfl-stub-key-8f3a91c2d4e5"
LAYOUT = Layout.from_pairs([("a red ball", [0.0, 0.0, 0.5, 0.25]), ("a blue cube", [0.5, 0.5, 1.0, 1.0])])
ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class BflStub(LocalServer):
    """POST /v1/{model} -> {id, polling_url, cost}; GET /v1/get_result?id= -> Pending, then Ready with
    result.sample; GET /samples/{id}.png the image (boxes drawn white). Requests are checked as the
    docs say: x-key, 1 to 32 boxes with unique ids referenced in the prompt, bbox in [0, 1]."""

    def __init__(self, first: list[int] | None = None) -> None:
        self.first = list(first or [])  # statuses to answer the first POSTs with (429, 500...)
        self.posts: list[dict[str, Any]] = []
        self.sample_headers: list[dict[str, str]] = []
        self.polls: dict[str, int] = {}
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, status: int, payload: Any, ctype: str = "application/json") -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                if self.headers.get("x-key") != KEY:
                    return self.answer(403, {"detail": "Not authenticated"})
                if stub.first:
                    return self.answer(stub.first.pop(0), {"detail": "busy"})
                problems = stub.check(body)
                if problems:
                    return self.answer(422, {"detail": [{"loc": ["body", *p[0]], "msg": p[1], "type": "value_error"} for p in problems]})
                task = f"task{len(stub.posts)}"
                stub.posts.append({"path": self.path, "body": body})
                return self.answer(200, {"id": task, "polling_url": f"{stub.url}/v1/get_result?id={task}", "cost": 4.5,
                                         "input_mp": 0.0, "output_mp": 1.0})

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                if url.path == "/v1/get_result":
                    if self.headers.get("x-key") != KEY:
                        return self.answer(403, {"detail": "Not authenticated"})
                    task = parse_qs(url.query)["id"][0]
                    stub.polls[task] = stub.polls.get(task, 0) + 1
                    if stub.polls[task] == 1:
                        return self.answer(200, {"id": task, "status": "Pending", "result": None})
                    if "moderate me" in stub.posts[int(task[4:])]["body"]["prompt"]:
                        return self.answer(200, {"id": task, "status": "Content Moderated", "result": None,
                                                 "details": {"Moderation Reasons": ["Derivative Works Filter"]}})
                    return self.answer(200, {"id": task, "status": "Ready",
                                             "result": {"sample": f"{stub.url}/samples/{task}.png?se=2026&sig=abc"}})
                if url.path.startswith("/samples/"):
                    stub.sample_headers.append({k.lower(): v for k, v in self.headers.items()})
                    return self.answer(200, stub.render(stub.posts[int(url.path[len("/samples/task"):-4])]["body"]), "image/png")
                return self.answer(404, {"detail": "Not Found"})

        self.serve(Handler)

    @staticmethod
    def check(body: dict[str, Any]) -> list[tuple[list[Any], str]]:
        problems = []
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            problems.append((["prompt"], "field required"))
        boxes = body.get("bounding_boxes")
        if boxes is not None:
            if not 1 <= len(boxes) <= 32:
                problems.append((["bounding_boxes"], "1 to 32 boxes"))
            ids = [b.get("id") for b in boxes]
            if len(set(ids)) != len(ids):
                problems.append((["bounding_boxes"], "ids must be unique"))
            for i, b in enumerate(boxes):
                y1, x1, y2, x2 = b["bbox"]
                if not ID.match(str(b.get("id"))) or not (0 <= y1 < y2 <= 1 and 0 <= x1 < x2 <= 1):
                    problems.append((["bounding_boxes", i], "invalid box"))
                if f"<{b.get('id')}>" not in body["prompt"]:
                    problems.append((["prompt"], f"box {b.get('id')} is not referenced"))
        return problems

    @staticmethod
    def render(body: dict[str, Any]) -> bytes:
        from PIL import Image, ImageDraw

        image = Image.new("RGB", (160, 90) if body["aspect_ratio"] == "16:9" else (100, 100), (60, 60, 60))
        draw = ImageDraw.Draw(image)
        for b in body.get("bounding_boxes") or []:
            y1, x1, y2, x2 = b["bbox"]
            draw.rectangle([x1 * image.width, y1 * image.height, x2 * image.width - 1, y2 * image.height - 1], fill=(255, 255, 255))
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()


def request(layout: Layout | None = LAYOUT, **kw: Any) -> GenerationRequest:
    return GenerationRequest(**{"prompt": "a ball and a cube", "layout": layout, "seed": 11, "width": 1024, "height": 1024, **kw})


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("BFL_API_KEY", KEY)


def test_boxes_go_as_published_and_the_image_and_cost_come_back(key):
    with BflStub() as stub:
        gen = create_generator("bfl", base_url=stub.url, sleep=lambda s: None)
        out = gen.generate(request())
    sent = stub.posts[0]
    assert sent["path"] == "/v1/flux-3.1-image"
    body = sent["body"]
    assert body["bounding_boxes"] == [{"id": "obj_1", "bbox": [0.0, 0.0, 0.25, 0.5], "desc": "a red ball"},
                                      {"id": "obj_2", "bbox": [0.5, 0.5, 1.0, 1.0], "desc": "a blue cube"}]
    assert body["prompt"] == "a ball and a cube (<obj_1> a red ball, <obj_2> a blue cube)"
    assert body["aspect_ratio"] == "1:1" and body["seed"] == 11 and body["output_format"] == "png"
    image = out.image
    assert image.getpixel((10, 10)) == (255, 255, 255) and image.getpixel((10, 40)) == (60, 60, 60)  # y, x order kept
    assert out.cost_usd == pytest.approx(0.045) and gen.spent_usd == pytest.approx(0.045)
    assert "x-key" not in stub.sample_headers[0]  # the signed sample URL never gets the key
    assert stub.polls == {"task0": 2}


def test_busy_answers_are_retried_and_refusals_are_one_line(key):
    with BflStub(first=[429, 503]) as stub:
        gen = BflGenerator(base_url=stub.url, sleep=lambda s: None)
        out = gen.generate(request(layout=None, width=1280, height=720))
        assert "bounding_boxes" not in stub.posts[0]["body"] and stub.posts[0]["body"]["aspect_ratio"] == "16:9"
        assert "BFL calls retried: rate_limit, server" in out.notes
        with pytest.raises(BackendError, match=r"^BFL task task1 ended with status Content Moderated: .*Derivative"):
            gen.generate(GenerationRequest(prompt="moderate me", layout=None, seed=1, width=64, height=64))
        bad = Layout.from_pairs([(f"thing {i}", [0.0, 0.0, 0.5, 0.5]) for i in range(40)])
        out = gen.generate(request(layout=bad))  # 40 objects: the 32 largest go
        assert len(stub.posts[-1]["body"]["bounding_boxes"]) == 32 and any("kept the 32 largest" in n for n in out.notes)


def test_a_wrong_key_and_a_missing_key_say_what_to_set(monkeypatch):
    monkeypatch.delenv("BFL_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="set BFL_API_KEY"):
        BflGenerator()
    monkeypatch.setenv("MY_BFL", "wrong-key-0123456789")
    with BflStub() as stub:
        gen = BflGenerator(base_url=stub.url, api_key_env="MY_BFL", retries=0)
        with pytest.raises(BackendError) as caught:
            gen.generate(request())
    assert "rejected the credentials (403): check MY_BFL" in str(caught.value)
    assert "wrong-key" not in str(caught.value) and "wrong-key" not in repr(gen)


def test_a_polling_url_on_another_site_gets_no_key(key):
    gen = BflGenerator(base_url="https://api.bfl.ai", sleep=lambda s: None)
    with pytest.raises(BackendError, match="another site"):
        gen._wait("https://evil.example/v1/get_result?id=1", "1")
    assert gen.site == "bfl.ai"


def test_conversions():
    assert bfl_boxes(["a"], [[0.1, 0.2, 0.3, 0.4]]) == [{"id": "obj_1", "bbox": [0.2, 0.1, 0.4, 0.3], "desc": "a"}]
    assert nearest_aspect_ratio(1024, 1024) == "1:1" and nearest_aspect_ratio(768, 1024) == "3:4"
    assert nearest_aspect_ratio(1000, 330) == "21:9"


def test_generate_on_the_command_line_keeps_the_key_out_of_the_run(key, tmp_path, capsys, monkeypatch):
    from mllm_guidance.cli import main
    from tests.cli.test_cli import PROMPT, RECORDING

    with BflStub() as stub:
        monkeypatch.setenv("BFL_BASE_URL", stub.url)
        code = main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--generator", "bfl",
                     "--size", "64", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["usage"]["generator_cost_usd"] == pytest.approx(0.045 * record["usage"]["generator_calls"])
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".html", ".txt"):
            assert KEY not in path.read_text(errors="ignore"), path
