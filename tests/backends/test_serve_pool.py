"""The generator pool on Ray Serve: a local Ray with 2 CPU replicas of a tiny GLIGEN (2 steps, 64 px),
rendered on through ``serve:`` specs: concurrent clients, a killed replica, and ``bench``."""

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

from mllm_guidance.backends.generator import GenerationRequest, render  # noqa: E402
from mllm_guidance.backends.registry import create_generator  # noqa: E402
from mllm_guidance.backends.serve_client import ServeGenerator, request_from_json, request_to_json  # noqa: E402
from mllm_guidance.backends.serve_pool import deploy  # noqa: E402
from mllm_guidance.errors import BackendError, InputError  # noqa: E402
from mllm_guidance.layout import Layout  # noqa: E402
from tests.backends.tiny_diffusion import build_tiny_gligen  # noqa: E402
from tests.fakes import WorkerSketch  # noqa: E402

OPTIONS = {"steps": 2, "beta": 0.5, "device": "cpu"}
LAYOUT = Layout.from_pairs([("a cat", [0.1, 0.2, 0.5, 0.9]), ("a dog", [0.55, 0.3, 0.95, 0.9])])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    model = build_tiny_gligen(tmp_path_factory.mktemp("gligen"))
    ray.init(num_cpus=2, resources={"sim_gpu": 2}, include_dashboard=False, log_to_driver=False)
    try:
        port = free_port()
        url = deploy(f"gligen:{model}", OPTIONS, replicas=2, port=port, max_batch=4)  # a CPU each
        slow = deploy(WorkerSketch(1.5), name="slow", replicas=2, resources={"sim_gpu": 1}, port=port, max_ongoing=2)
        yield url, slow, model
    finally:
        serve.shutdown()
        ray.shutdown()


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def request(seed, prompt="a cat next to a dog"):
    return GenerationRequest(prompt=prompt, layout=LAYOUT, seed=seed, width=64, height=64)


def test_wire_format_round_trips_and_refuses_nonsense():
    req = request(3)
    assert request_from_json(json.loads(json.dumps(request_to_json(req)))) == req
    for bad in ([], {"prompt": "x"}, {**request_to_json(req), "width": 10**6}, {**request_to_json(req), "layout": {"objects": 5}}):
        with pytest.raises(InputError, match="render request"):
            request_from_json(bad)


def test_concurrent_clients_get_the_images_of_lone_renders(pool):
    url, _, model = pool
    remote = create_generator(f"serve:{url}")
    assert isinstance(remote, ServeGenerator) and remote.name == "gligen" and remote.workers == 2
    lone = create_generator(f"gligen:{model}", **OPTIONS)
    requests = [request(seed) for seed in (0, 1, 2, 3, 4, 5)] + [request(1, "a red car beside a tree")]
    with ThreadPoolExecutor(len(requests)) as threads:  # several clients at once: batched on the replicas
        served = list(threads.map(remote.generate_timed, requests))
    replicas = {timings["replica"] for _, timings in served}
    assert len(replicas) == 2  # both replicas rendered
    assert max(timings["batch"] for _, timings in served) > 1  # and batched what waited together
    for req, (got, timings) in zip(requests, served):
        alone = render(lone, req)
        diff = np.abs(pixels(got.image) - pixels(alone.image))
        assert diff.max() <= 1 and diff.mean() < 0.01, (req.seed, diff.max())  # float rounding only
        assert got.notes == alone.notes and timings["render_seconds"] > 0
    assert np.abs(pixels(served[0][0].image) - pixels(served[1][0].image)).max() > 10  # not one image


def test_a_request_the_generator_refuses_is_not_retried(pool):
    url, _, _ = pool
    remote = ServeGenerator(url)
    assert remote._client.post(url, content=b"not json").status_code == 422
    with pytest.raises(BackendError, match="refused the render \\(422\\).*64..4096"):
        remote.generate(GenerationRequest(prompt="x", layout=None, seed=0, width=10, height=64))
    assert remote.resent == 0


def test_a_replica_whose_renders_keep_failing_reports_itself_unhealthy():
    from mllm_guidance.backends.serve_pool import UNHEALTHY_AFTER, GeneratorReplica

    replica = GeneratorReplica(WorkerSketch(0.0), {}, max_batch=1, batch_wait=0.0, replicas=1)
    replica.check_health()
    replica.failures_in_a_row = UNHEALTHY_AFTER
    with pytest.raises(RuntimeError, match="renders failed"):
        replica.check_health()


def test_an_unreachable_or_wrong_url_is_one_line():
    with pytest.raises(BackendError, match="cannot reach the generator pool"):
        ServeGenerator(f"http://127.0.0.1:{free_port()}/gligen", connect_timeout=2)
    with pytest.raises(BackendError, match="give the pool's URL"):
        create_generator("serve:gligen")


def test_more_replicas_than_the_cluster_holds_is_one_line(pool):
    from mllm_guidance.errors import ConfigError

    with pytest.raises(ConfigError, match="room for 0 of the 3 replicas asked for \\(each needs 1 sim_gpu\\)"):
        deploy("sketch", name="toomany", replicas=3, resources={"sim_gpu": 1}, port=8000)


def test_killing_a_replica_mid_benchmark_loses_no_item(pool, tmp_path):
    import asyncio

    from mllm_guidance.eval.runner import BenchSpec, run_bench
    from tests.fakes import StepChatModel

    _, slow, _ = pool
    remote = ServeGenerator(slow)
    data = tmp_path / "prompts.txt"
    data.write_text("\n".join(f"A cat number {i} sits next to a dog." for i in range(6)) + "\n")
    spec = BenchSpec(dataset=str(data), out=tmp_path / "out", mllm=StepChatModel(), generator=remote, concurrency=4,
                     config={"self_correct": False, "width": 64, "height": 64})

    def kill_one_replica():
        time.sleep(1.0)  # every replica holds renders by now (4 in flight, at most 2 on each)
        names = [a for a in ray.util.list_named_actors(all_namespaces=True) if "slow" in a["name"] and "REPLICA" in a["name"]]
        ray.kill(ray.get_actor(names[0]["name"], namespace=names[0]["namespace"]), no_restart=True)

    killer = threading.Thread(target=kill_one_replica)
    killer.start()
    records = asyncio.run(run_bench(spec))
    killer.join()
    assert [r["status"] for r in records] == ["ok"] * 6
    assert remote.resent >= 1  # the killed replica's renders were sent again and drawn elsewhere


def test_bench_renders_on_the_pool_through_a_serve_spec(pool, tmp_path, capsys):
    from mllm_guidance.cli import main
    from tests.stubs import PLANNER_ANSWERS, StubServer, openai_completion, step_in

    url, _, model = pool
    data = tmp_path / "prompts.txt"
    data.write_text("A man sits under a tree.\nA bird above a house.\n")
    with StubServer(lambda path, body: (200, openai_completion(PLANNER_ANSWERS[step_in(body)]))) as stub:
        assert main(["bench", "--dataset", str(data), "--mllm", "openai:gpt-4o", "--mllm-base-url", stub.url + "/v1",
                     "--generator", f"serve:{url}", "--size", "64", "--correct-rounds", "0", "--quiet",
                     "--out", str(tmp_path / "out")]) == 0
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"] and records[0]["models"]["generator"] == "gligen"
    assert records[0]["generator_calls"] >= 1


def test_serve_generator_flags_are_checked_before_ray_starts(capsys):
    from mllm_guidance.cli import main

    assert main(["serve-generator", "--generator", "sketch", "--ray-resources", "{bad"]) == 2
    assert "--ray-resources: not JSON" in capsys.readouterr().err
    assert main(["serve-generator", "--generator", "sketch", "--autoscaling", "--replicas", "1"]) == 2
    assert "nothing to scale" in capsys.readouterr().err
