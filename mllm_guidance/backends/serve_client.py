"""Rendering on a generator pool served by Ray Serve: the ``serve:`` generator spec.

``--generator serve:http://HOST:PORT/NAME`` is a generator like any other to the CLI, ``bench``,
the LangGraph and MCP servers and the studio, but its renders run on the replicas of a Ray Serve
application started by ``mllm-guidance serve-generator`` (``backends.serve_pool``), one per GPU of
a cluster, shared by every client. Layouts go out as JSON (the ``GenerationRequest``); the image
comes back as raw pixels (lossless, and no PNG encoding on either side) with the replica's
timings in headers. Concurrent requests are batched on the replica (Serve's batching) where its
backend batches, so this class renders alone and ``schedules_itself``.

A replica that dies mid-render (killed, out of memory, a lost node) makes Serve answer 5xx or drop
the connection; the request is then sent again, and Serve routes it to a live replica (up to
``retries`` times), so the run goes on. A render the generator itself refuses comes back as 422
with its message and is not retried. Only ``httpx`` is needed here: clients do not install Ray.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import urlparse

from mllm_guidance.backends.generator import GenerationRequest, Generated
from mllm_guidance.errors import BackendError, InputError
from mllm_guidance.layout import Layout
from mllm_guidance.redact import redact_text

#: Statuses that mean the pool, not the request, failed: sent again.
RETRY_STATUSES = frozenset({500, 502, 503, 504})


# -- the wire format, shared with the replicas --------------------------------------------------


def request_to_json(request: GenerationRequest) -> dict[str, Any]:
    fields = {k: getattr(request, k) for k in request.__dataclass_fields__}
    fields["layout"] = request.layout.model_dump(mode="json") if request.layout is not None else None
    return fields


def request_from_json(data: Any) -> GenerationRequest:
    """A request from a client's JSON; anything malformed is one ``InputError`` line."""
    if not isinstance(data, dict):
        raise InputError("a render request must be a JSON object")
    try:
        layout = Layout.model_validate(data["layout"]) if data.get("layout") is not None else None
        values = {k: data.get(k) for k in GenerationRequest.__dataclass_fields__ if k in data}
        values["layout"] = layout
        request = GenerationRequest(**values)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"bad render request: {' '.join(str(exc).split())[:300]}") from None
    if not (isinstance(request.width, int) and isinstance(request.height, int) and 64 <= request.width <= 4096
            and 64 <= request.height <= 4096 and isinstance(request.seed, int)):
        raise InputError("bad render request: width and height must be integers in 64..4096, seed an integer")
    return request


def image_headers(generated: Generated, timings: dict[str, float]) -> dict[str, str]:
    image = generated.image
    return {"x-image-mode": image.mode, "x-image-size": f"{image.width}x{image.height}",
            "x-notes": json.dumps(generated.notes), "x-timings": json.dumps(timings)}


def decode_image(body: bytes, headers: Any) -> tuple[Generated, dict[str, float]]:
    from PIL import Image

    try:
        width, height = (int(v) for v in headers["x-image-size"].split("x"))
        image = Image.frombytes(headers["x-image-mode"], (width, height), body)
        notes = json.loads(headers.get("x-notes") or "[]")
        timings = json.loads(headers.get("x-timings") or "{}")
    except (KeyError, ValueError, TypeError) as exc:
        raise BackendError(f"the generator pool sent an unreadable image ({exc})") from None
    return Generated(image=image, notes=[str(n) for n in notes]), timings


# -- the client ---------------------------------------------------------------------------------


class ServeGenerator:
    """A generator whose renders run on a Ray Serve generator pool (see the module docstring).

    ``model`` is the application's URL, ``http://HOST:PORT/NAME`` (what ``serve-generator``
    prints); ``retries`` is how many times a render the pool dropped is sent again."""

    schedules_itself = True
    device = None

    def __init__(self, model: str, retries: int = 4, timeout: float = 1800.0, connect_timeout: float = 10.0) -> None:
        import httpx

        parsed = urlparse(model or "")
        if parsed.scheme not in ("http", "https") or not parsed.netloc or not parsed.path.strip("/"):
            raise BackendError(f"serve:{model}: give the pool's URL, e.g. serve:http://127.0.0.1:8000/gligen "
                               "(as printed by mllm-guidance serve-generator)")
        self.url = model.rstrip("/")
        self.retries = retries
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=connect_timeout))
        self._lock = threading.Lock()
        self.resent = 0  # renders sent again after the pool dropped them
        try:
            answer = self._client.get(self.url)
        except httpx.HTTPError as exc:
            raise BackendError(f"cannot reach the generator pool at {redact_text(self.url)} ({type(exc).__name__}); "
                               "is `mllm-guidance serve-generator` running there?") from None
        if answer.status_code != 200:
            raise BackendError(f"{redact_text(self.url)} answered {answer.status_code}, not a generator pool; "
                               "check the URL (http://HOST:PORT/NAME)")
        info = answer.json()
        self.name = str(info["name"])
        self.default_size = tuple(info["default_size"])
        self.weights_license = info.get("weights_license")
        self.workers = int(info.get("replicas") or 1)

    def generate(self, request: GenerationRequest) -> Generated:
        return self.generate_timed(request)[0]

    def generate_timed(self, request: GenerationRequest) -> tuple[Generated, dict[str, float]]:
        """The image and the replica's timings: seconds queued and rendering there, the batch it
        rendered in, the replica's process id."""
        import httpx

        payload = request_to_json(request)
        reason = ""
        for attempt in range(self.retries + 1):
            if attempt:
                with self._lock:
                    self.resent += 1
                time.sleep(min(2.0, 0.25 * attempt))
            try:
                answer = self._client.post(self.url, json=payload)
            except (httpx.TransportError, httpx.RemoteProtocolError) as exc:  # dropped: a replica or the proxy died
                reason = f"{type(exc).__name__}: {exc}"
                continue
            if answer.status_code == 200:
                return decode_image(answer.content, answer.headers)
            text = " ".join(answer.text.split())[:300]
            if answer.status_code in RETRY_STATUSES:
                reason = f"{answer.status_code}: {text}"
                continue
            raise BackendError(f"the generator pool refused the render ({answer.status_code}): {redact_text(text)}")
        raise BackendError(f"the generator pool at {redact_text(self.url)} failed this render {self.retries + 1} "
                           f"time(s): {redact_text(reason)[:300]}")

    def close(self) -> None:
        self._client.close()
