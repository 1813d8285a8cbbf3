"""``serve-generator``: a generator pool on Ray Serve that ``--generator serve:URL`` renders on."""

from __future__ import annotations

from typing import Any

import typer

from mllm_guidance.cli.app import app, echo, manners
from mllm_guidance.cli.options import generator_options, generator_params, with_params
from mllm_guidance.errors import InputError


@app.command("serve-generator")
@manners
@with_params(generator_params())
def serve_generator(
    ray_address: str | None = typer.Option(None, "--ray-address", metavar="ADDR", help="Ray cluster to deploy on "
                                           "(ray://HOST:10001, or auto for one started with `ray start` here); none: "
                                           "a local Ray runtime on this machine, for as long as the command runs."),
    replicas: int | None = typer.Option(None, "--replicas", min=1, help="Replicas (default: one per GPU of the "
                                        "cluster, or per unit of --ray-resources; 1 without GPUs)."),
    autoscaling: bool = typer.Option(False, "--autoscaling", help="Let Serve scale between 1 replica and one per GPU "
                                     "(or --replicas) with the load."),
    gpus_per_replica: float | None = typer.Option(None, "--gpus-per-replica", min=0, help="GPUs each replica holds "
                                                  "(default 1 on a cluster with GPUs; 0.5: two replicas per GPU)."),
    ray_resources: str | None = typer.Option(None, "--ray-resources", metavar="JSON", help='Custom Ray resources each '
                                             'replica needs, e.g. \'{"sim_gpu": 1}\'.'),
    max_batch: int = typer.Option(4, "--max-batch", min=1, help="Requests a replica renders in one batch, where "
                                  "the generator batches (Serve's batching)."),
    name: str | None = typer.Option(None, "--name", help="Application name: the URL's path (default: the generator's name)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address Serve's HTTP proxy listens on (0.0.0.0: every "
                             "interface; the pool has no authentication, keep it on a trusted network)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port of Serve's HTTP proxy."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    **options: Any,
) -> int:
    """Serve a generator on Ray Serve, one replica per GPU; render on it with --generator serve:URL."""
    import json
    import time

    from mllm_guidance.backends.serve_pool import _serve, deploy

    if autoscaling and replicas == 1:
        raise InputError("--autoscaling with --replicas 1 leaves nothing to scale; give a larger --replicas or drop one")
    try:
        resources = json.loads(ray_resources) if ray_resources else {}
    except json.JSONDecodeError as exc:
        raise InputError(f'--ray-resources: not JSON ({exc.msg}); give e.g. \'{{"sim_gpu": 1}}\'') from None
    if not isinstance(resources, dict) or not all(isinstance(v, (int, float)) for v in resources.values()):
        raise InputError('--ray-resources: give a JSON object of names to amounts, e.g. \'{"sim_gpu": 1}\'')
    serve = _serve()
    import ray

    ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
    try:
        url = deploy(options["generator"], generator_options(options), name=name, replicas=replicas,
                     autoscaling=autoscaling, gpus_per_replica=gpus_per_replica, resources=resources,
                     max_batch=max_batch, host=host, port=port)
        echo(f"generator pool ready: --generator serve:{url}")
        echo("Ctrl-C stops it" + ("" if ray_address else " (and the local Ray runtime)"))
        while True:
            time.sleep(3600)
    finally:
        if not ray_address:
            serve.shutdown()
        ray.shutdown()
