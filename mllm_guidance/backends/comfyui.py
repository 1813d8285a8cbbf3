"""``comfyui:URL``: render on a user's running ComfyUI server, through its HTTP and websocket API.

Users keep their ComfyUI: its models (quantised or not), caches, LoRAs and GPU queue. The generator
sends a workflow in ComfyUI's API format to ``POST /prompt`` with a client id, follows the run on
``/ws?clientId=...`` (``progress`` messages give steps done / total; ``executing`` with no node, or
``execution_success``, ends it; ``execution_error`` fails it), then reads the images from
``GET /history/{prompt_id}`` and fetches the first with ``GET /view``. A workflow ComfyUI refuses
(its validation answers 400 with ``error`` and ``node_errors``) becomes one line naming the node,
its class and what was wrong.

Spec: ``comfyui:http://HOST:PORT``; options as keywords or as the URL's query, e.g.
``comfyui:http://127.0.0.1:8188?checkpoint=sd-v1-5.safetensors&gligen=gligen_sd14_textbox_pruned.safetensors``.

* Default workflow: ComfyUI's built-in nodes, ``CheckpointLoaderSimple`` -> ``CLIPTextEncode``
  (prompt, negative) -> ``GLIGENLoader`` + one ``GLIGENTextBoxApply`` per object, chained on the
  positive conditioning -> ``EmptyLatentImage`` -> ``KSampler`` -> ``VAEDecode`` -> ``SaveImage``.
  ``checkpoint`` and ``gligen`` name files in the server's ``models/checkpoints`` and ``models/gligen``;
  left out, the server's only file of that kind is used (asked through ``/object_info``), and a choice
  among several is asked of the user in one line. GLIGEN for SD 1.x: ``gligen_sd14_textbox_pruned``
  (comfyanonymous/GLIGEN_pruned_safetensors; the GLIGEN weights are MIT-licensed, the checkpoint's
  own licence applies to the render, e.g. CreativeML OpenRAIL-M for SD 1.5).
* ``workflow=PATH``: the user's own workflow, in API format ("Export (API)" in ComfyUI), with
  placeholders as whole string values: ``{{prompt}}``, ``{{negative_prompt}}``, ``{{seed}}``,
  ``{{width}}``, ``{{height}}``, ``{{steps}}``, ``{{cfg}}``; and for the layout one
  ``GLIGENTextBoxApply`` node whose ``text`` is ``{{boxes}}``: it is repeated once per object, chained,
  and whatever read its output reads the last one (no objects: its ``conditioning_to``).

Native box format: ``GLIGENTextBoxApply`` takes pixels, ``x``, ``y`` (top-left), ``width``,
``height``, in steps of 8 (ComfyUI divides them by 8 for the latent); boxes are converted here and
at most 30 objects (GLIGEN's slots) are sent, the largest. Defaults: 512 x 512 (SD 1.x), 25 steps,
cfg 7.5, ``euler`` / ``normal``. Memory and speed are the server's. Transport failures are retried
like the MLLM's (``backends.remote``); the websocket wait is bounded by ``timeout``.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from mllm_guidance.backends.generator import Generated, GenerationRequest
from mllm_guidance.backends.grounding import GLIGEN_MAX_OBJECTS, fit_size, grounding_inputs
from mllm_guidance.backends.remote import RemoteHTTP
from mllm_guidance.errors import BackendError, ConfigError

log = logging.getLogger("mllm_guidance.comfyui")
DEFAULT_URL = "http://127.0.0.1:8188"
PLACEHOLDERS = ("prompt", "negative_prompt", "seed", "width", "height", "steps", "cfg")
BOXES = "{{boxes}}"
#: Options the spec's query may set, with their types.
QUERY_OPTIONS: dict[str, type] = {"checkpoint": str, "gligen": str, "workflow": str, "steps": int, "cfg": float,
                                  "sampler": str, "scheduler": str, "timeout": float, "retries": int}


def split_spec_url(url: str) -> tuple[str, dict[str, Any]]:
    """The server URL without its query, and the options the query sets."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"comfyui: {url!r} is not a server URL; give comfyui:http://HOST:PORT")
    options: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query):
        if key not in QUERY_OPTIONS:
            raise ConfigError(f"comfyui: unknown option {key!r} in the URL; known: {', '.join(QUERY_OPTIONS)}")
        try:
            options[key] = QUERY_OPTIONS[key](value)
        except ValueError:
            raise ConfigError(f"comfyui: option {key}={value!r} must be a {QUERY_OPTIONS[key].__name__}") from None
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", "")), options


def gligen_box(box: list[float], width: int, height: int) -> dict[str, int]:
    """Normalized corners -> GLIGENTextBoxApply's pixel x, y, width, height, snapped to its step of 8."""
    def snap(v: float) -> int:
        return int(round(v / 8)) * 8

    x, y = snap(box[0] * width), snap(box[1] * height)
    w = max(8, snap(box[2] * width) - x)
    h = max(8, snap(box[3] * height) - y)
    return {"x": min(x, width - 8), "y": min(y, height - 8), "width": w, "height": h}


def default_workflow(*, checkpoint: str, gligen: str | None, prompt: str, negative: str, phrases: list[str],
                     boxes: list[dict[str, int]], seed: int, width: int, height: int, steps: int, cfg: float,
                     sampler: str, scheduler: str) -> dict[str, Any]:
    """ComfyUI's built-in GLIGEN graph in API format (node ids are strings, links ``[id, output]``)."""
    wf: dict[str, Any] = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["1", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
    }
    positive: list[Any] = ["2", 0]
    if phrases:
        wf["4"] = {"class_type": "GLIGENLoader", "inputs": {"gligen_name": gligen}}
        for i, (phrase, box) in enumerate(zip(phrases, boxes, strict=True)):
            node = f"box{i}"
            wf[node] = {"class_type": "GLIGENTextBoxApply", "inputs": {
                "conditioning_to": positive, "clip": ["1", 1], "gligen_textbox_model": ["4", 0], "text": phrase, **box}}
            positive = [node, 0]
    wf["6"] = {"class_type": "KSampler", "inputs": {
        "model": ["1", 0], "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler, "scheduler": scheduler,
        "positive": positive, "negative": ["3", 0], "latent_image": ["5", 0], "denoise": 1.0}}
    wf["7"] = {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["1", 2]}}
    wf["8"] = {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "mllm-guidance"}}
    return wf


def fill_workflow(template: dict[str, Any], values: dict[str, Any], phrases: list[str],
                  boxes: list[dict[str, int]]) -> dict[str, Any]:
    """The user's workflow with placeholders replaced and its ``{{boxes}}`` node repeated per object."""
    wf = copy.deepcopy(template)
    for node in wf.values():
        inputs = node.get("inputs", {})
        for key, value in list(inputs.items()):
            if isinstance(value, str) and value.startswith("{{") and value.endswith("}}") and value != BOXES:
                name = value[2:-2].strip()
                if name not in values:
                    raise ConfigError(f"comfyui workflow: unknown placeholder {value}; known: "
                                      f"{', '.join('{{' + p + '}}' for p in PLACEHOLDERS)}, {BOXES}")
                inputs[key] = values[name]
    templates = [nid for nid, node in wf.items() if node.get("inputs", {}).get("text") == BOXES]
    if len(templates) > 1:
        raise ConfigError(f"comfyui workflow: {len(templates)} nodes have text {BOXES}; give one")
    if not templates:
        return wf
    nid = templates[0]
    template_node = wf.pop(nid)
    last: Any = template_node["inputs"].get("conditioning_to")
    for i, (phrase, box) in enumerate(zip(phrases, boxes, strict=True)):
        node_id = f"{nid}.{i}"
        node = copy.deepcopy(template_node)
        node["inputs"].update({"conditioning_to": last, "text": phrase, **box})
        wf[node_id] = node
        last = [node_id, 0]
    for node in wf.values():  # whatever read the template's output reads the chain's end
        for key, value in node.get("inputs", {}).items():
            if isinstance(value, list) and len(value) == 2 and value[0] == nid:
                node["inputs"][key] = last
    return wf


def validation_line(body: Any) -> str:
    """ComfyUI's 400 answer to ``/prompt`` as one line: the error, then each node's first problems."""
    if not isinstance(body, dict):
        return "ComfyUI refused the workflow"
    error = body.get("error") or {}
    if isinstance(error, str):
        error = {"message": error}
    parts = []
    for node_id, info in (body.get("node_errors") or {}).items():
        for err in (info.get("errors") or [])[:2]:
            detail = err.get("details") or ""
            parts.append(f"node {node_id} ({info.get('class_type', '?')}): {err.get('message', '?')}"
                         + (f": {detail}" if detail else ""))
    head = error.get("message") or "invalid workflow"
    if error.get("details") and not parts:
        head += f": {error['details']}"
    return "ComfyUI refused the workflow: " + head + ("; " + "; ".join(parts) if parts else "")


class ComfyUIGenerator:
    name = "comfyui"
    default_size = (512, 512)
    schedules_itself = True  # the server queues renders; no local device lock
    max_objects = GLIGEN_MAX_OBJECTS

    def __init__(self, model: str = DEFAULT_URL, *, checkpoint: str | None = None, gligen: str | None = None,
                 workflow: str | Path | dict[str, Any] | None = None, steps: int | None = None, cfg: float | None = None,
                 guidance_scale: float | None = None, sampler: str | None = None, scheduler: str | None = None,
                 timeout: float | None = None, retries: int | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
        url, query = split_spec_url(model)
        self.url = url
        self.checkpoint, self.gligen = checkpoint or query.get("checkpoint"), gligen or query.get("gligen")
        self.steps = steps or query.get("steps", 25)
        self.cfg = next(v for v in (cfg, guidance_scale, query.get("cfg"), 7.5) if v is not None)
        self.sampler, self.scheduler = sampler or query.get("sampler", "euler"), scheduler or query.get("scheduler", "normal")
        self.timeout = float(timeout or query.get("timeout", 600.0))
        self.http = RemoteHTTP(url, who="ComfyUI", timeout=min(self.timeout, 60.0),
                               retries=retries if retries is not None else query.get("retries", 4))
        self.template = self._read_workflow(workflow if workflow is not None else query.get("workflow"))
        self.on_progress = on_progress
        self.client_id = uuid.uuid4().hex
        self._choices: dict[str, list[str]] = {}

    @staticmethod
    def _read_workflow(workflow: str | Path | dict[str, Any] | None) -> dict[str, Any] | None:
        if workflow is None or isinstance(workflow, dict):
            return workflow
        try:
            data = json.loads(Path(workflow).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"comfyui workflow {workflow}: not readable JSON ({exc})") from None
        if not isinstance(data, dict) or not all(isinstance(n, dict) and "class_type" in n for n in data.values()):
            raise ConfigError(f"comfyui workflow {workflow}: not in API format (export it with 'Export (API)')")
        return data

    # ---- what the server has ----
    def choices(self, node: str, field: str) -> list[str]:
        """The values ``field`` of ``node`` accepts on this server (files, samplers), from /object_info."""
        key = f"{node}.{field}"
        if key not in self._choices:
            info = self.http.request("GET", f"/object_info/{node}").json()
            spec = (info.get(node) or {}).get("input", {}).get("required", {}).get(field)
            if not spec:
                raise BackendError(f"ComfyUI at {self.url} has no node {node} (with input {field}); is it a ComfyUI server?")
            options = spec[0] if isinstance(spec[0], list) else (spec[1] or {}).get("options", [])
            self._choices[key] = [str(v) for v in options]
        return self._choices[key]

    def _pick(self, given: str | None, node: str, field: str, option: str) -> str:
        if given:
            return given
        files = self.choices(node, field)
        if len(files) == 1:
            return files[0]
        found = ", ".join(files[:8]) + (" ..." if len(files) > 8 else "") if files else "none"
        raise ConfigError(f"comfyui: choose the {option} file (?{option}=NAME in the spec); the server has: {found}")

    # ---- rendering ----
    def workflow_for(self, request: GenerationRequest) -> tuple[dict[str, Any], list[str]]:
        width, height, notes = fit_size(request.width, request.height, 8)
        phrases, corners, more = grounding_inputs(request.layout, [], max_objects=self.max_objects)
        notes += more
        boxes = [gligen_box(b, width, height) for b in corners]
        steps = request.steps or self.steps
        cfg = request.guidance_scale if request.guidance_scale is not None else self.cfg
        negative = request.negative_prompt or ""
        seed = request.seed % 2**64  # KSampler's seed range
        if self.template is not None:
            values = {"prompt": request.prompt, "negative_prompt": negative, "seed": seed, "width": width,
                      "height": height, "steps": steps, "cfg": cfg}
            return fill_workflow(self.template, values, phrases, boxes), notes
        checkpoint = self._pick(self.checkpoint, "CheckpointLoaderSimple", "ckpt_name", "checkpoint")
        gligen = self._pick(self.gligen, "GLIGENLoader", "gligen_name", "gligen") if phrases else None
        wf = default_workflow(checkpoint=checkpoint, gligen=gligen, prompt=request.prompt, negative=negative,
                              phrases=phrases, boxes=boxes, seed=seed, width=width, height=height, steps=steps,
                              cfg=cfg, sampler=self.sampler, scheduler=self.scheduler)
        return wf, notes

    def generate(self, request: GenerationRequest) -> Generated:
        workflow, notes = self.workflow_for(request)
        image, steps = self.run(workflow)
        return Generated(image=image, notes=notes + ([f"ComfyUI sampled {steps} steps"] if steps else []))

    def run(self, workflow: dict[str, Any]) -> tuple[Any, int]:
        """Queue ``workflow``, follow it on the websocket, return (first output image, steps seen)."""
        try:
            from websockets.exceptions import WebSocketException
            from websockets.sync.client import connect
        except ImportError:
            raise BackendError("comfyui needs websockets: pip install 'mllm-guidance[remote]'") from None

        ws_url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        try:
            with connect(ws_url, open_timeout=min(self.timeout, 30.0), max_size=None) as ws:
                queued = self.http.request("POST", "/prompt", json={"prompt": workflow, "client_id": self.client_id},
                                           refuse=lambda r: validation_line(_json(r))).json()
                prompt_id = queued.get("prompt_id")
                if not prompt_id:
                    raise BackendError(validation_line(queued))
                steps = self._follow(ws, prompt_id)
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise BackendError(f"ComfyUI at {self.url}: websocket failed ({type(exc).__name__}: {exc}); "
                               "is the server running and the URL right?") from None
        history = self.http.request("GET", f"/history/{prompt_id}").json().get(prompt_id) or {}
        for output in (history.get("outputs") or {}).values():
            for image in output.get("images") or []:
                if image.get("type", "output") == "output":
                    return self._fetch(image), steps
        raise BackendError(f"ComfyUI ran prompt {prompt_id} but saved no image; the workflow needs a SaveImage node")

    def _follow(self, ws: Any, prompt_id: str) -> int:
        import time

        deadline, steps = time.monotonic() + self.timeout, 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BackendError(f"ComfyUI did not finish prompt {prompt_id} within {self.timeout:g} s "
                                   "(timeout option); it may still be queued behind other work")
            try:
                message = ws.recv(timeout=left)
            except TimeoutError:
                continue  # the deadline check above says so in one line
            if not isinstance(message, str):  # binary frames are previews
                continue
            event = json.loads(message)
            kind, data = event.get("type"), event.get("data") or {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            if kind == "progress":
                steps = max(steps, int(data.get("value", 0)))
                log.info("ComfyUI %s: step %s/%s", prompt_id, data.get("value"), data.get("max"))
                if self.on_progress is not None:
                    self.on_progress(int(data.get("value", 0)), int(data.get("max", 0)))
            elif kind == "execution_error":
                raise BackendError(f"ComfyUI failed in node {data.get('node_id')} ({data.get('node_type')}): "
                                   f"{data.get('exception_type', 'error')}: {str(data.get('exception_message', '')).strip()}")
            elif kind == "execution_interrupted":
                raise BackendError(f"ComfyUI prompt {prompt_id} was interrupted on the server")
            elif kind == "execution_success" or (kind == "executing" and data.get("node") is None
                                                 and data.get("prompt_id") == prompt_id):
                return steps

    def _fetch(self, image: dict[str, Any]) -> Any:
        from PIL import Image

        params = {"filename": image["filename"], "subfolder": image.get("subfolder", ""), "type": image.get("type", "output")}
        data = self.http.request("GET", "/view", params=params).content
        try:
            picture = Image.open(io.BytesIO(data))
            picture.load()
        except Exception as exc:
            raise BackendError(f"ComfyUI's /view returned no readable image for {image['filename']} ({exc})") from None
        return picture.convert("RGB")


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"error": {"message": response.text[:200]}}
