"""A generator pool on Ray Serve: any registered generator, one replica per GPU, behind one URL.

``mllm-guidance serve-generator --generator SPEC`` deploys ``GeneratorReplica`` as a Serve
application named after the generator; each replica builds the generator once (from its spec
string and options, so every GPU loads its own copy; or from a pickled generator object, for
light ones and tests) and renders what ``serve:`` clients (``backends.serve_client``) send it:
``GET /NAME`` describes the pool, ``POST /NAME`` renders one request. Where the backend batches
(``generate_batch``), concurrent requests on a replica go through Serve's ``@serve.batch`` and are
split by ``batch_key`` into ``render_batch`` calls, each image equal to its lone render; otherwise
each request renders alone, holding the replica's device.

Placement follows ``backends.ray_pool.worker_plan``: one replica per GPU of the cluster (or per
unit of custom resources), ``replicas`` to say otherwise, or Serve's autoscaling between 1 and that
many. Serve checks each replica's health (``check_health``: a replica whose renders keep failing
for reasons other than the request is replaced) and restarts dead ones; clients send a dropped
render again, which Serve routes to a live replica.

Ray Serve is an optional dependency (``pip install 'mllm-guidance[ray]'``), imported only here.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from mllm_guidance.backends.generator import (
    GenerationRequest,
    Generated,
    batch_key,
    can_batch,
    render,
    render_batch,
)
from mllm_guidance.backends.serve_client import image_headers, request_from_json
from mllm_guidance.errors import ConfigError, GuidanceError

#: Renders in a row that fail for reasons other than the request before a replica reports itself unhealthy.
UNHEALTHY_AFTER = 3


def _serve() -> Any:
    try:
        from ray import serve
    except ImportError:
        raise ConfigError("serve-generator needs Ray Serve: pip install 'mllm-guidance[ray]'") from None
    return serve


class GeneratorReplica:
    """One replica: a generator built once, rendering HTTP requests (see the module docstring)."""

    def __init__(self, generator: Any, options: dict[str, Any], max_batch: int, batch_wait: float,
                 replicas: int) -> None:
        from mllm_guidance.backends.registry import create_generator

        self.generator = create_generator(generator, **options) if isinstance(generator, str) else generator
        self.replicas = replicas
        self.batches = can_batch(self.generator) and max_batch > 1
        if self.batches:
            self._batched.set_max_batch_size(max_batch)
            self._batched.set_batch_wait_timeout_s(batch_wait)
        self.failures_in_a_row = 0
        self.rendered = 0

    def describe(self) -> dict[str, Any]:
        g = self.generator
        return {"name": getattr(g, "name", type(g).__name__), "default_size": list(g.default_size),
                "weights_license": getattr(g, "weights_license", None), "device": getattr(g, "device", None),
                "batches": self.batches, "replicas": self.replicas, "pid": os.getpid()}

    async def __call__(self, http: Any) -> Any:
        from starlette.responses import JSONResponse, Response

        if http.method == "GET":
            return JSONResponse(self.describe())
        arrived = time.perf_counter()
        try:
            request = request_from_json(await http.json())
        except GuidanceError as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=422)
        try:
            generated, seconds, batch = await (self._batched(request) if self.batches else self._alone(request))
        except GuidanceError as exc:  # the generator refused this request: the client's to fix, not retried
            return JSONResponse({"error": str(exc)}, status_code=422)
        except Exception:
            self.failures_in_a_row += 1
            raise  # Serve answers 500 and the client sends it again (to another replica where there is one)
        self.failures_in_a_row = 0
        self.rendered += 1
        total = time.perf_counter() - arrived
        timings = {"render_seconds": round(seconds, 4), "queued_seconds": round(max(0.0, total - seconds), 4),
                   "batch": batch, "replica": os.getpid()}
        return Response(generated.image.tobytes(), media_type="application/octet-stream",
                        headers=image_headers(generated, timings))

    async def _alone(self, request: GenerationRequest) -> tuple[Generated, float, int]:
        def timed() -> tuple[Generated, float, int]:
            started = time.perf_counter()
            generated = render(self.generator, request)
            return generated, time.perf_counter() - started, 1

        return await asyncio.to_thread(timed)

    async def _batched_impl(self, requests: list[GenerationRequest]) -> list[tuple[Generated, float, int]]:
        """Serve's batch, split into groups that may share a pipeline call, rendered one group at a time."""
        groups: dict[Any, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(batch_key(self.generator, request), []).append(index)
        out: list[Any] = [None] * len(requests)
        for indices in groups.values():
            started = time.perf_counter()
            images = await asyncio.to_thread(render_batch, self.generator, [requests[i] for i in indices])
            seconds = time.perf_counter() - started
            for i, generated in zip(indices, images):
                out[i] = (generated, seconds, len(indices))
        return out

    def check_health(self) -> None:
        """Serve calls this every few seconds; raising makes it replace the replica."""
        if self.failures_in_a_row >= UNHEALTHY_AFTER:
            raise RuntimeError(f"the last {self.failures_in_a_row} renders failed")


def _with_serve_batching() -> type[GeneratorReplica]:
    """``GeneratorReplica`` with ``_batched`` as Serve's batching method (Serve is imported here, late)."""
    serve = _serve()

    class BatchingReplica(GeneratorReplica):
        @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.005)
        async def _batched(self, requests: list[GenerationRequest]) -> list[tuple[Generated, float, int]]:
            return await self._batched_impl(requests)

    BatchingReplica.__name__ = BatchingReplica.__qualname__ = "GeneratorReplica"
    return BatchingReplica


def _needs(request: dict[str, Any]) -> str:
    needs = {"CPU": request["num_cpus"], "GPU": request["num_gpus"], **request.get("resources", {})}
    return ", ".join(f"{v:g} {k}" for k, v in needs.items() if v) or "nothing"


def _room(available: dict[str, float], request: dict[str, Any]) -> int:
    """How many replicas the free resources hold (Serve would wait for ever on the rest)."""
    needs = {"CPU": request["num_cpus"], "GPU": request["num_gpus"], **request.get("resources", {})}
    fits = [available.get(k, 0.0) / v for k, v in needs.items() if v]
    return int(min(fits) + 1e-9) if fits else 10**6


def deploy(generator: Any, options: dict[str, Any] | None = None, *, name: str | None = None,
           replicas: int | None = None, autoscaling: bool = False, gpus_per_replica: float | None = None,
           resources: dict[str, float] | None = None, max_batch: int = 4, batch_wait: float = 0.005,
           host: str = "127.0.0.1", port: int = 8000, max_ongoing: int = 8) -> str:
    """Deploy the pool on the connected Ray cluster (``ray.init`` first) and return its URL."""
    import ray

    from mllm_guidance.backends.ray_pool import RayOptions, worker_plan

    serve = _serve()
    count, request = worker_plan(ray.cluster_resources(), RayOptions(workers=replicas, gpus_per_worker=gpus_per_replica,
                                                                      resources=resources or {}))
    room = _room(ray.available_resources(), request)
    if room < (1 if autoscaling else count):
        raise ConfigError(f"the Ray cluster has room for {room} of the {count} replicas asked for (each needs "
                          f"{_needs(request)}); give fewer --replicas, or free or add resources")
    if generator is None:
        generator = "gligen-xl" if request["num_gpus"] > 0 else "sketch"
    if name is None:
        name = (generator if isinstance(generator, str) else getattr(generator, "name", "generator")).split(":")[0]
    actor_options = {"num_gpus": request["num_gpus"], "num_cpus": request["num_cpus"],
                     **({"resources": request["resources"]} if "resources" in request else {})}
    scaling: dict[str, Any] = ({"autoscaling_config": {"min_replicas": 1, "max_replicas": count,
                                                      "target_ongoing_requests": max(2, max_batch)}}
                               if autoscaling else {"num_replicas": count})
    deployment = serve.deployment(_with_serve_batching(), name=name, ray_actor_options=actor_options,
                                  max_ongoing_requests=max(max_ongoing, 2 * max_batch), health_check_period_s=5,
                                  health_check_timeout_s=30, **scaling)
    serve.start(http_options={"host": host, "port": port})
    app = deployment.bind(generator, dict(options or {}), max_batch, batch_wait, count)
    serve.run(app, name=name, route_prefix=f"/{name}")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://{shown}:{port}/{name}"
