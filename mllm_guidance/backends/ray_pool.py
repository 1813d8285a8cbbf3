"""Renders on a Ray cluster: a generator whose renders run on generator actors, one per GPU.

The benchmark runner keeps the graph (and every MLLM call) in the driver process; only the generate
node's renders leave it. ``RayGeneratorPool`` is a ``Generator`` like any other: its ``generate``
sends the request to the least busy of its ``GeneratorWorker`` actors and waits for the image. Each
actor builds the generator once (from its spec string and options, so every GPU loads its own copy
of the model; or from a pickled generator object, for light ones), holds one GPU (``num_gpus``,
fractional if wanted) or the custom resources given, and serves several requests at once, so its
``BatchingGenerator`` can render them in one batch (``max_batch``).

A worker that dies mid-render (out of memory, a lost node, a kill) costs only the renders it held:
each is sent again, to another worker where there is one, up to ``retries`` times, while Ray
restarts the dead worker (``max_restarts``, reloading its model); past that the render fails with
the reason, and the benchmark records that item as failed (a rerun retries it). Results are written
by the driver alone, so nothing is written twice.

Ray is an optional dependency (``pip install 'mllm-guidance[ray]'``), imported only here.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any

from pydantic import BaseModel, Field

from mllm_guidance.backends.generator import GenerationRequest, Generated, as_generated, render, render_batch
from mllm_guidance.errors import BackendError, ConfigError


class RayOptions(BaseModel):
    """How the benchmark runs its renders on Ray (``bench --ray`` / ``--ray-address``)."""

    address: str | None = Field(default=None, description="Ray cluster to join (ray://HOST:10001, or auto for "
                                "one started with `ray start` here); none: start a local Ray runtime on this machine.")
    workers: int | None = Field(default=None, ge=1, description="Generator actors; default: one per GPU of the "
                                "cluster (per unit of --ray-resources when given), or 1 on a cluster without GPUs.")
    gpus_per_worker: float | None = Field(default=None, ge=0, description="GPUs each generator actor holds; default "
                                          "1 where the cluster has GPUs, else 0. 0.5 puts two actors on each GPU.")
    resources: dict[str, float] = Field(default={}, description='Custom Ray resources each actor needs, as JSON, '
                                        'e.g. {"sim_gpu": 1}.')
    retries: int = Field(default=3, ge=0, description="Times a render whose actor died is sent again.")
    max_restarts: int = Field(default=3, ge=-1, description="Times Ray restarts a dead generator actor (-1: always).")
    start_timeout: float = Field(default=1800.0, gt=0, description="Seconds to wait for the actors to load their models.")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'mllm-guidance[ray]'") from None
    return ray


class GeneratorWorker:
    """A Ray actor holding one generator (on the GPU Ray gave it) and rendering requests sent to it."""

    def __init__(self, generator: Any, options: dict[str, Any], max_batch: int, max_wait: float) -> None:
        from mllm_guidance.backends.batching import coalescing
        from mllm_guidance.backends.registry import create_generator

        self.error: Exception | None = None
        try:
            built = create_generator(generator, **options) if isinstance(generator, str) else generator
            self.generator = coalescing(built, max_batch, max_wait)
        except Exception as exc:  # noqa: BLE001 - kept for describe(), which the pool calls first
            self.error = exc  # (an actor whose constructor raises is only reported as dead)

    def describe(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        g = self.generator
        return {"name": getattr(g, "name", type(g).__name__), "default_size": tuple(g.default_size),
                "weights_license": getattr(g, "weights_license", None), "device": getattr(g, "device", None),
                "supports_repair": bool(getattr(g, "supports_repair", False)), "pid": os.getpid()}

    def render(self, request: GenerationRequest) -> Generated:
        return render(self.generator, request)

    def render_batch(self, requests: list[GenerationRequest]) -> list[Generated]:
        return render_batch(self.generator, requests)


def worker_plan(cluster: dict[str, float], options: RayOptions) -> tuple[int, dict[str, Any]]:
    """How many generator actors, and what each asks Ray for: one per GPU (or per unit of the custom
    resources) unless ``workers`` says otherwise."""
    gpus = options.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if cluster.get("GPU", 0) >= 1 and not options.resources else 0.0
    fits: list[float] = []
    if gpus > 0:
        fits.append(cluster.get("GPU", 0) / gpus)
    for name, amount in options.resources.items():
        if amount > 0:
            fits.append(cluster.get(name, 0) / amount)
    count = options.workers or (max(0, math.floor(min(fits) + 1e-9)) if fits else 1)
    if count < 1:
        wanted = ", ".join([f"{gpus:g} GPU"] * (gpus > 0) + [f"{v:g} {k}" for k, v in options.resources.items()])
        raise ConfigError(f"the Ray cluster has no room for a generator actor needing {wanted} "
                          f"(it has {', '.join(f'{v:g} {k}' for k, v in sorted(cluster.items()) if not k.startswith('node:'))})")
    # an actor that holds a GPU or a custom resource needs no CPU slot; one that holds neither takes one
    request: dict[str, Any] = {"num_gpus": gpus, "num_cpus": 0 if (gpus > 0 or options.resources) else 1}
    if options.resources:
        request["resources"] = dict(options.resources)
    return count, request


class RayGeneratorPool:
    """A generator whose renders run on Ray generator actors (see the module docstring).

    Connects to Ray (``options.address``, or a local runtime) unless this process already is;
    ``close`` ends the actors, and the Ray connection when it made it."""

    schedules_itself = True
    device = None

    def __init__(self, generator: Any, generator_options: dict[str, Any] | None = None,
                 options: RayOptions | None = None, *, max_batch: int = 1, max_wait: float = 0.005) -> None:
        ray = _ray()
        self.options = options or RayOptions()
        self._owns_ray = False
        if not ray.is_initialized():
            ray.init(address=self.options.address, include_dashboard=False, log_to_driver=False)
            self._owns_ray = True
        try:
            count, request = worker_plan(ray.cluster_resources(), self.options)
            if generator is None:
                generator = "gligen-xl" if request["num_gpus"] > 0 else "sketch"
            self.spec = generator if isinstance(generator, str) else None
            self.generator_options = dict(generator_options or {})
            concurrency = max(4, 2 * max(1, max_batch))  # requests an actor holds at once, so batches can fill
            actor = ray.remote(GeneratorWorker).options(max_concurrency=concurrency, max_restarts=self.options.max_restarts,
                                                        **request)
            self._actors = [actor.remote(generator, self.generator_options, max_batch, max_wait) for _ in range(count)]
            info = self._describe(ray)
        except BaseException:
            self.close()
            raise
        self.name, self.default_size = info["name"], tuple(info["default_size"])
        self.weights_license = info["weights_license"]
        self.supports_repair = bool(info.get("supports_repair"))
        self.workers = len(self._actors)
        self._busy = [0] * self.workers
        self._failed_at = [0.0] * self.workers
        self._lock = threading.Lock()
        self.worker_deaths = 0

    def _describe(self, ray: Any) -> dict[str, Any]:
        refs = [a.describe.remote() for a in self._actors]
        ready, pending = ray.wait(refs, num_returns=len(refs), timeout=self.options.start_timeout)
        if pending:
            raise BackendError(f"{len(pending)} of {len(refs)} Ray generator actors did not start within "
                               f"{self.options.start_timeout:g} s (the cluster's resources are taken, or the model loads slowly)")
        try:
            return ray.get(ready[0])
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            raise BackendError(f"the generator could not be built on a Ray worker: {type(cause).__name__}: {cause}") from None
        except ray.exceptions.RayActorError as exc:
            raise BackendError(f"a Ray generator actor died while loading its model: {_reason(exc)}") from None

    # -- the generator face -------------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> Generated:
        return self._call(lambda actor: actor.render.remote(request), as_generated)

    def generate_batch(self, requests: list[GenerationRequest]) -> list[Generated]:
        return self._call(lambda actor: actor.render_batch.remote(list(requests)), lambda out: [as_generated(x) for x in out])

    def _call(self, submit: Any, convert: Any) -> Any:
        ray = _ray()
        reason = ""
        for attempt in range(self.options.retries + 1):
            index = self._pick()
            try:
                return convert(ray.get(submit(self._actors[index])))
            except ray.exceptions.RayTaskError as exc:  # the generator itself failed: no retry, its own error
                cause = getattr(exc, "cause", None)
                raise (cause if isinstance(cause, Exception) else BackendError(str(exc))) from None
            except ray.exceptions.RayActorError as exc:  # the actor died or is restarting: send it again
                reason = _reason(exc)
                with self._lock:
                    self._failed_at[index] = time.monotonic()
                    self.worker_deaths += 1
                time.sleep(min(2.0, 0.2 * attempt))
            finally:
                with self._lock:
                    self._busy[index] -= 1
        raise BackendError(f"the Ray generator actor rendering this image died {self.options.retries + 1} time(s): {reason}")

    def _pick(self) -> int:
        """The least busy actor, preferring those that have not failed in the last few seconds."""
        with self._lock:
            now = time.monotonic()
            index = min(range(self.workers), key=lambda i: (now - self._failed_at[i] < 5.0, self._busy[i]))
            self._busy[index] += 1
            return index

    def close(self) -> None:
        ray = _ray()
        for actor in getattr(self, "_actors", []):
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actors = []
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"
