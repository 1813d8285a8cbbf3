"""``bfl:MODEL``: Black Forest Labs' hosted FLUX API, which takes the layout as bounding boxes.

Request and answer as docs.bfl.ai publishes them (read 2026-12; "FLUX 3.1 Image, Bounding boxes" and
the API reference): ``POST {base}/v1/{model}`` with the key in the ``x-key`` header and a JSON body
``{"prompt", "bounding_boxes", "aspect_ratio", "seed", "output_format"}``; it answers ``{"id",
"polling_url"}`` (and, where the API reports it, ``"cost"`` in credits, 1 credit = 0.01 USD); ``GET
polling_url`` (with ``x-key``) answers ``{"id", "status", "result"}`` until ``status`` is ``Ready``,
when ``result.sample`` is a signed URL of the image, valid for 10 minutes and fetched here at once
(without the key). Any other final status (``Error``, ``Failed``, ``Request Moderated``, ``Content
Moderated``, ``Task not found``) fails the render in one line.

Box format: 1 to 32 entries ``{"id", "bbox", "desc"}``, ``bbox`` = ``[y_min, x_min, y_max, x_max]`` as
fractions of the image from the top-left corner (the project's ``[x1, y1, x2, y2]`` reordered here),
``id`` letters, digits and ``_`` starting with a letter (``obj_1``, ...), each referenced in the prompt
in angle brackets: the prompt is sent as ``PROMPT (<obj_1> desc 1, <obj_2> desc 2)``. More than 32
objects: the largest are kept. Size: the API takes an aspect ratio (``21:9`` ... ``9:21``), so the
nearest to the requested width/height is sent and the image comes back at the API's resolution.

Models: ``flux-3.1-image`` (default; the model whose docs define ``bounding_boxes``), posted to
``/v1/flux-3.1-image`` by the API's rule of one path per model (``/v1/flux-pro-1.1``, ``/v1/flux-2-pro``);
the bounding-box page's own examples call a helper, so this path is inferred, not quoted: if your
account's API reference names another, give it as ``bfl:PATH``. Key: ``BFL_API_KEY`` (option
``api_key_env`` names another variable); it is sent only to the API's own hosts and never logged.
Regional hosts: option ``base_url`` or ``BFL_BASE_URL`` (``https://api.eu.bfl.ai``, ``https://api.us.bfl.ai``). Licence:
outputs of BFL's hosted API are governed by BFL's API terms of service, not by an open licence.
Cost: the API's reported cost of each render, else ``price_usd`` per image if given, is added to the
run's ``usage.generator_cost_usd`` (``run.json``); published list prices change, so none is built in.
Transport failures and 429/5xx answers are retried with the MLLM's policy (``backends.remote``).
Repair by the API's box-by-box edit (``images`` with ``src_bbox``/``tgt_bbox``) is not wired yet: the
project's repair option has not landed.
"""

from __future__ import annotations

import io
import ipaddress
import os
import re
import time
from collections.abc import Callable
from math import gcd
from typing import Any
from urllib.parse import urlsplit

from mllm_guidance.backends.generator import Generated, GenerationRequest
from mllm_guidance.backends.grounding import grounding_inputs
from mllm_guidance.backends.remote import RemoteHTTP
from mllm_guidance.errors import BackendError, ConfigError

DEFAULT_MODEL = "flux-3.1-image"
DEFAULT_BASE_URL = "https://api.bfl.ai"
MAX_BOXES = 32
ASPECT_RATIOS = ("21:9", "2:1", "16:9", "3:2", "7:5", "4:3", "5:4", "1:1", "4:5", "3:4", "5:7", "2:3", "9:16", "1:2", "9:21")
USD_PER_CREDIT = 0.01
WAITING = ("Pending", "Processing", "Queued")
_MODEL_PATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def bfl_boxes(names: list[str], corners: list[list[float]]) -> list[dict[str, Any]]:
    """The project's normalized ``[x1, y1, x2, y2]`` as BFL's ``{"id", "bbox": [y_min, x_min, y_max, x_max], "desc"}``."""
    return [{"id": f"obj_{i}", "bbox": [round(y1, 4), round(x1, 4), round(y2, 4), round(x2, 4)], "desc": name}
            for i, (name, (x1, y1, x2, y2)) in enumerate(zip(names, corners, strict=True), start=1)]


def nearest_aspect_ratio(width: int, height: int) -> str:
    target = width / height
    return min(ASPECT_RATIOS, key=lambda r: abs(int(r.split(":")[0]) / int(r.split(":")[1]) - target))


def _site(host: str) -> str:
    """The registrable part of a host (``api.us1.bfl.ai`` -> ``bfl.ai``); an IP address is its own site."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        return ".".join(host.split(".")[-2:])


class BflGenerator:
    name = "bfl"
    default_size = (1024, 1024)
    schedules_itself = True  # BFL's servers queue renders; no local device lock
    weights_license = "hosted: Black Forest Labs API terms of service"

    def __init__(self, model: str = DEFAULT_MODEL, *, base_url: str | None = None, api_key_env: str = "BFL_API_KEY",
                 output_format: str = "png", poll_interval: float = 0.5, timeout: float = 300.0, retries: int = 4,
                 price_usd: float | None = None, safety_tolerance: int | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        if not _MODEL_PATH.match(model):
            raise ConfigError(f"bfl: {model!r} is not a model path of the API (e.g. bfl:{DEFAULT_MODEL})")
        key = os.environ.get(api_key_env, "").strip()
        if not key:
            raise ConfigError(f"bfl: set {api_key_env} to your Black Forest Labs API key (api.bfl.ai)")
        self.model, self.output_format, self.price_usd = model, output_format, price_usd
        self.poll_interval, self.timeout, self.safety_tolerance = poll_interval, timeout, safety_tolerance
        self.sleep = sleep or time.sleep
        base_url = base_url or os.environ.get("BFL_BASE_URL", "").strip() or DEFAULT_BASE_URL
        self.http = RemoteHTTP(base_url, who="BFL API", headers={"x-key": key, "accept": "application/json"},
                               timeout=min(timeout, 60.0), retries=retries, sleep=sleep, key_env=api_key_env)
        self.site = _site(urlsplit(self.http.base_url).hostname or "")
        self.spent_usd = 0.0

    def __repr__(self) -> str:  # never the key
        return f"BflGenerator(model={self.model!r}, base_url={self.http.base_url!r})"

    def body(self, request: GenerationRequest) -> tuple[dict[str, Any], list[str]]:
        """The JSON BFL takes for ``request``, and notes on what had to change."""
        names, corners, notes = grounding_inputs(request.layout, [], max_objects=MAX_BOXES)
        ratio = nearest_aspect_ratio(request.width, request.height)
        w, h = (int(v) for v in ratio.split(":"))
        g = gcd(request.width, request.height)
        if (request.width // g, request.height // g) != (w, h):
            notes.append(f"size {request.width}x{request.height}: the API takes an aspect ratio; sent {ratio}")
        body: dict[str, Any] = {"prompt": request.prompt, "aspect_ratio": ratio, "seed": request.seed % 2**32,
                                "output_format": self.output_format}
        if names:
            boxes = bfl_boxes(names, corners)
            body["bounding_boxes"] = boxes
            mentions = ", ".join(f"<{b['id']}> {b['desc']}" for b in boxes)
            body["prompt"] = f"{request.prompt} ({mentions})"
        if self.safety_tolerance is not None:
            body["safety_tolerance"] = self.safety_tolerance
        if request.negative_prompt:
            notes.append("the BFL API takes no negative prompt; it was left out")
        return body, notes

    def generate(self, request: GenerationRequest) -> Generated:
        body, notes = self.body(request)
        task = self.http.request("POST", f"/v1/{self.model}", json=body, refuse=_refusal).json()
        polling_url = task.get("polling_url") or f"/v1/get_result?id={task.get('id')}"
        sample = self._wait(polling_url, task.get("id"))
        image = self._download(sample)
        cost = float(task["cost"]) * USD_PER_CREDIT if isinstance(task.get("cost"), (int, float)) else self.price_usd
        if cost is not None:
            self.spent_usd += cost
            notes.append(f"BFL billed ${cost:.4f}")
        else:
            notes.append("BFL did not report the cost; set price_usd to account for it")
        if self.http.retried:
            notes.append(f"BFL calls retried: {', '.join(self.http.retried)}")
            self.http.retried.clear()
        return Generated(image=image, notes=notes, cost_usd=cost)

    def _wait(self, polling_url: str, task_id: Any) -> str:
        host = urlsplit(polling_url).hostname
        if host and _site(host) != self.site:
            raise BackendError(f"BFL answered with a polling URL on another site ({host}); not sending the key there")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self.http.request("GET", polling_url).json()
            status = str(answer.get("status", ""))
            if status == "Ready":
                sample = (answer.get("result") or {}).get("sample")
                if not sample:
                    raise BackendError(f"BFL task {task_id} is Ready but has no result.sample")
                return str(sample)
            if status not in WAITING:
                detail = answer.get("details") or answer.get("error") or ""
                raise BackendError(f"BFL task {task_id} ended with status {status or 'unknown'}"
                                   + (f": {str(detail)[:200]}" if detail else ""))
            if time.monotonic() > deadline:
                raise BackendError(f"BFL task {task_id} not ready within {self.timeout:g} s (timeout option)")
            self.sleep(self.poll_interval)

    def _download(self, url: str) -> Any:
        import httpx
        from PIL import Image

        try:
            response = httpx.get(url, timeout=60.0)  # a signed URL: no key goes with it
            response.raise_for_status()
            picture = Image.open(io.BytesIO(response.content))
            picture.load()
        except Exception as exc:
            raise BackendError(f"BFL's result image could not be fetched ({type(exc).__name__}); "
                               "it expires 10 minutes after the render") from None
        return picture.convert("RGB")


def _refusal(response: Any) -> str | None:
    """A 4xx answer of the API as one line (its ``detail``, FastAPI's shape), keys never included."""
    if response.status_code in (401, 403):
        return None  # the generic line says which variable to check
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text[:200]
    if isinstance(detail, list):
        detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg', '')}" if isinstance(d, dict)
                           else str(d) for d in detail[:3])
    return f"BFL API refused the request ({response.status_code}): {str(detail)[:300]}"
