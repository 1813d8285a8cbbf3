"""A stand-in for a ComfyUI server on 127.0.0.1: its HTTP routes and websocket, validating workflows
against ComfyUI's own node definitions (``tests/backends/data/comfyui_object_info.json``, captured from
a real server's ``/object_info``; ``test_comfyui_real.py`` checks they still agree).

Why a stand-in: ComfyUI is not on PyPI and CI machines cannot clone it, so the real server runs only
where a developer names a checkout (``COMFYUI_DIR``, ``tests/backends/comfyui_real.py``).
What it checks is what ComfyUI's ``execution.validate_prompt`` checks: every class exists, a workflow
has an output node, required inputs are present, links point at an existing node's output of the
right type, numbers lie within min/max and list values are among the choices; it answers with
ComfyUI's error shapes (400, ``error`` + ``node_errors``). A valid workflow "runs": websocket
messages as ComfyUI sends them (``execution_start``, ``executing``, ``progress`` per KSampler step,
``executed``, ``execution_success``, then ``executing`` with no node), a PNG on which the
GLIGEN boxes that reached the KSampler are drawn, ``/history/{id}`` and ``/view``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import queue
import select
import struct
import threading
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.stubs import LocalServer

OBJECT_INFO = json.loads((Path(__file__).parent / "backends" / "data" / "comfyui_object_info.json").read_text())
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _frame(text: str | bytes, opcode: int = 0x1) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    head = bytes([0x80 | opcode])
    if len(data) < 126:
        return head + bytes([len(data)]) + data
    if len(data) < 2**16:
        return head + bytes([126]) + struct.pack(">H", len(data)) + data
    return head + bytes([127]) + struct.pack(">Q", len(data)) + data


class ComfyUIStub(LocalServer):
    def __init__(self, checkpoints: list[str] | None = None, gligen: list[str] | None = None,
                 fail_in: str | None = None) -> None:
        self.files = {"checkpoints": checkpoints or ["tiny-sd15.safetensors"],
                      "gligen": gligen or ["gligen_sd14_textbox_pruned.safetensors"]}
        self.fail_in = fail_in  # a class_type whose execution raises (execution_error)
        self.prompts: list[dict[str, Any]] = []
        self.history: dict[str, Any] = {}
        self.images: dict[str, bytes] = {}
        self.clients: dict[str, queue.Queue] = {}
        self.post_failures = 0  # answer this many POST /prompt with 503 first
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, payload: Any, status: int = 200) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                if url.path == "/ws":
                    return self._websocket(parse_qs(url.query).get("clientId", [""])[0])
                if url.path == "/object_info":
                    return self._json(stub.object_info())
                if url.path.startswith("/object_info/"):
                    name = url.path.rsplit("/", 1)[1]
                    info = stub.object_info()
                    return self._json({name: info[name]} if name in info else {})
                if url.path.startswith("/history/"):
                    pid = url.path.rsplit("/", 1)[1]
                    return self._json({pid: stub.history[pid]} if pid in stub.history else {})
                if url.path == "/view":
                    name = parse_qs(url.query).get("filename", [""])[0]
                    if name not in stub.images:
                        return self._json({"error": "not found"}, 404)
                    data = stub.images[name]
                    self.send_response(200)
                    self.send_header("content-type", "image/png")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return None
                return self._json({"error": "not found"}, 404)

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                if urlsplit(self.path).path != "/prompt":
                    return self._json({"error": "not found"}, 404)
                if stub.post_failures > 0:
                    stub.post_failures -= 1
                    return self._json({"error": "busy"}, 503)
                status, payload = stub.queue_prompt(body)
                return self._json(payload, status)

            def _websocket(self, client_id: str) -> None:
                key = self.headers.get("Sec-WebSocket-Key", "")
                accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
                self.send_response(101)
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.send_header("Sec-WebSocket-Accept", accept)
                self.end_headers()
                self.wfile.flush()
                outbox = stub.clients.setdefault(client_id, queue.Queue())
                sock = self.connection
                sock.sendall(_frame(json.dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}},
                                                                            "sid": client_id}})))
                sock.sendall(_frame(b"\x00\x00\x00\x01preview", opcode=0x2))  # a binary preview frame, as ComfyUI sends
                while True:
                    try:
                        while True:
                            sock.sendall(_frame(outbox.get_nowait()))
                    except queue.Empty:
                        pass
                    ready, _, _ = select.select([sock], [], [], 0.02)
                    if ready:
                        head = sock.recv(2)
                        if len(head) < 2 or head[0] & 0x0F == 0x8:  # the client closes
                            try:
                                sock.sendall(_frame(b"\x03\xe8", opcode=0x8))
                            except OSError:
                                pass
                            self.close_connection = True
                            return

        self.serve(Handler)

    def object_info(self) -> dict[str, Any]:
        info = {k: v for k, v in json.loads(json.dumps(OBJECT_INFO)).items() if not k.startswith("_")}
        for node in info.values():
            for spec in node["input"]["required"].values():
                if isinstance(spec[0], list) and spec[0] and str(spec[0][0]).startswith("FILES:"):
                    spec[0] = list(self.files[spec[0][0].removeprefix("FILES:")])
        return info

    # ---- ComfyUI's validation, by its rules and error shapes ----
    def validate(self, workflow: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        info = self.object_info()
        for nid, node in workflow.items():
            ct = node.get("class_type") if isinstance(node, dict) else None
            if ct is None:
                return {"type": "invalid_prompt", "message": "Cannot execute because a node is missing the class_type property.",
                        "details": f"Node ID '#{nid}'", "extra_info": {}}, {}
            if ct not in info:
                return {"type": "invalid_prompt", "message": f"Cannot execute because node {ct} does not exist.",
                        "details": f"Node ID '#{nid}'", "extra_info": {}}, {}
        outputs = [nid for nid, node in workflow.items() if info[node["class_type"]]["output_node"]]
        if not outputs:
            return {"type": "prompt_no_outputs", "message": "Prompt has no outputs", "details": "", "extra_info": {}}, {}
        node_errors: dict[str, Any] = {}
        checked: set[str] = set()

        def check(nid: str) -> None:
            if nid in checked:
                return
            checked.add(nid)
            node = workflow[nid]
            spec = info[node["class_type"]]["input"]["required"]
            errors = []
            for name, kind in spec.items():
                value = node.get("inputs", {}).get(name)
                if value is None:
                    errors.append({"type": "required_input_missing", "message": "Required input is missing", "details": name})
                    continue
                if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                    source = workflow.get(value[0])
                    if source is None:
                        errors.append({"type": "bad_linked_input", "message": "Bad linked input, must be a length-2 list of [string, int]",
                                       "details": f"{name}: node {value[0]} does not exist"})
                        continue
                    produced = info[source["class_type"]]["output"]
                    received = produced[value[1]] if value[1] < len(produced) else None
                    if received != kind[0]:
                        errors.append({"type": "return_type_mismatch", "message": "Return type mismatch between linked nodes",
                                       "details": f"{name}, received_type({received}) mismatch input_type({kind[0]})"})
                    check(value[0])
                    continue
                if isinstance(kind[0], list):
                    if value not in kind[0]:
                        errors.append({"type": "value_not_in_list", "message": "Value not in list",
                                       "details": f"{name}: '{value}' not in {kind[0]}"})
                elif kind[0] in ("INT", "FLOAT"):
                    try:
                        number = int(value) if kind[0] == "INT" else float(value)
                    except (TypeError, ValueError):
                        errors.append({"type": "invalid_input_type", "message": f"Failed to convert an input value to a {kind[0]} value",
                                       "details": f"{name}, {value}"})
                        continue
                    limits = kind[1] if len(kind) > 1 else {}
                    if "min" in limits and number < limits["min"]:
                        errors.append({"type": "value_smaller_than_min", "message": f"Value {number} smaller than min of {limits['min']}",
                                       "details": name})
                    if "max" in limits and number > limits["max"]:
                        errors.append({"type": "value_bigger_than_max", "message": f"Value {number} bigger than max of {limits['max']}",
                                       "details": name})
                elif kind[0] == "STRING" and not isinstance(value, str):
                    errors.append({"type": "invalid_input_type", "message": "Failed to convert an input value to a STRING value",
                                   "details": f"{name}, {value}"})
            if errors:
                node_errors[nid] = {"errors": errors, "dependent_outputs": outputs, "class_type": node["class_type"]}

        for nid in outputs:
            check(nid)
        if node_errors:
            return {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                    "details": "", "extra_info": {}}, node_errors
        return None, {}

    def queue_prompt(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        workflow = body.get("prompt")
        if not isinstance(workflow, dict):
            return 400, {"error": {"type": "invalid_prompt", "message": "Prompt is not a dict", "details": "", "extra_info": {}},
                         "node_errors": {}}
        error, node_errors = self.validate(workflow)
        if error is not None:
            return 400, {"error": error, "node_errors": node_errors}
        self.prompts.append(body)
        prompt_id = str(uuid.uuid4())
        threading.Thread(target=self._execute, args=(prompt_id, workflow, body.get("client_id", "")), daemon=True).start()
        return 200, {"prompt_id": prompt_id, "number": len(self.prompts), "node_errors": {}}

    def _execute(self, prompt_id: str, workflow: dict[str, Any], client_id: str) -> None:
        outbox = self.clients.setdefault(client_id, queue.Queue())

        def send(kind: str, **data: Any) -> None:
            outbox.put(json.dumps({"type": kind, "data": {**data, "prompt_id": prompt_id}}))

        send("execution_start", timestamp=0)
        sampler_id = next(n for n, node in workflow.items() if node["class_type"] == "KSampler")
        for nid, node in workflow.items():
            send("executing", node=nid, display_node=nid)
            if node["class_type"] == self.fail_in:
                send("execution_error", node_id=nid, node_type=node["class_type"], executed=[],
                     exception_message="Error while deserializing header: HeaderTooLarge\n",
                     exception_type="safetensors_rust.SafetensorError", traceback=[], current_inputs={}, current_outputs={})
                return
        steps = int(workflow[sampler_id]["inputs"]["steps"])
        for step in range(1, steps + 1):
            send("progress", value=step, max=steps, node=sampler_id)
        name = f"mllm-guidance_{len(self.images) + 1:05}_.png"
        self.images[name] = self._render(workflow, sampler_id)
        save_id = next(n for n, node in workflow.items() if node["class_type"] == "SaveImage")
        images = [{"filename": name, "subfolder": "", "type": "output"}]
        self.history[prompt_id] = {"prompt": [len(self.prompts), prompt_id, workflow, {}, [save_id]],
                                   "outputs": {save_id: {"images": images}},
                                   "status": {"status_str": "success", "completed": True, "messages": []}}
        send("executed", node=save_id, display_node=save_id, output={"images": images})
        send("execution_success", timestamp=1)
        outbox.put(json.dumps({"type": "executing", "data": {"node": None, "prompt_id": prompt_id}}))

    @staticmethod
    def _render(workflow: dict[str, Any], sampler_id: str) -> bytes:
        """A grey canvas of the latent's size with each GLIGEN box that reached the sampler filled white."""
        from PIL import Image, ImageDraw

        latent = workflow[workflow[sampler_id]["inputs"]["latent_image"][0]]["inputs"]
        image = Image.new("RGB", (int(latent["width"]), int(latent["height"])), (60, 60, 60))
        draw = ImageDraw.Draw(image)
        link = workflow[sampler_id]["inputs"]["positive"]
        while workflow[link[0]]["class_type"] == "GLIGENTextBoxApply":
            box = workflow[link[0]]["inputs"]
            draw.rectangle([box["x"], box["y"], box["x"] + box["width"] - 1, box["y"] + box["height"] - 1], fill=(255, 255, 255))
            link = box["conditioning_to"]
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()
