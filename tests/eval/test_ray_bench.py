"""Benchmarks whose renders run on Ray generator actors: a local Ray runtime on the CPU, with a
custom resource ``sim_gpu`` standing in for GPUs. Every item is written exactly once, also when a
worker is killed mid-run."""

import asyncio
import json
import os
import signal
import threading
import time

import pytest

ray = pytest.importorskip("ray")

from mllm_guidance.backends.generator import GenerationRequest  # noqa: E402
from mllm_guidance.backends.ray_pool import RayGeneratorPool, RayOptions, worker_plan  # noqa: E402
from mllm_guidance.errors import BackendError, ConfigError  # noqa: E402
from mllm_guidance.eval.runner import RESULTS, BenchSpec, run_bench  # noqa: E402
from mllm_guidance.layout import Layout  # noqa: E402
from tests.fakes import CountingGenerator, StepChatModel, WorkerSketch  # noqa: E402

SIM = RayOptions(resources={"sim_gpu": 1}, retries=3)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, resources={"sim_gpu": 2}, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def dataset(tmp_path, n):
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(f"A cat number {i} sits next to a dog." for i in range(n)) + "\n")
    return str(path)


def spec(tmp_path, n=10, seconds=0.1, **kw):
    return BenchSpec(dataset=dataset(tmp_path, n), out=tmp_path / "out", mllm=StepChatModel(delay=0.02),
                     generator=WorkerSketch(seconds), images_per_prompt=2, concurrency=6,
                     config={"self_correct": False, "width": 64, "height": 64}, **{"ray": SIM, **kw})


def ok_lines(out):
    lines = [json.loads(line) for line in (out / RESULTS).read_text().splitlines()]
    return [r for r in lines if r["status"] == "ok"], lines


def workers_of(out, records):
    notes = set()
    for r in records:
        run = json.loads((out / r["run_dir"] / "run.json").read_text())
        notes.update(n for round_ in run["rounds"] for n in round_["generator_notes"])
    return notes


def test_every_item_once_with_renders_spread_over_the_actors(tmp_path, local_ray):
    s = spec(tmp_path)
    records = asyncio.run(run_bench(s))
    ok, lines = ok_lines(s.out)
    assert len(records) == len(lines) == len(ok) == 20
    assert len({r["key"] for r in ok}) == 20 and all((s.out / r["image"]).exists() for r in ok)
    assert ok[0]["models"]["generator"] == "worker-sketch"
    assert len(workers_of(s.out, ok)) == 2  # two sim_gpu actors, both rendered
    assert f"pid {os.getpid()}" not in workers_of(s.out, ok)  # none in the driver
    asyncio.run(run_bench(spec(tmp_path)))
    assert len((s.out / RESULTS).read_text().splitlines()) == 20  # a rerun redoes nothing


def kill_one_worker_after(out, records_before_kill, killed):
    """Kill (SIGKILL) the process that drew the first finished image once some records exist."""
    deadline = time.time() + 60
    while time.time() < deadline:
        if (out / RESULTS).exists():
            ok = [json.loads(line) for line in (out / RESULTS).read_text().splitlines()]
            if len(ok) >= records_before_kill:
                pid = int(sorted(workers_of(out, ok[:1]))[0].split()[1])
                os.kill(pid, signal.SIGKILL)
                killed.append((pid, len(ok)))
                return
        time.sleep(0.02)


def test_a_killed_worker_loses_nothing_its_renders_are_sent_again(tmp_path, local_ray):
    s = spec(tmp_path, n=12, seconds=0.2)
    killed: list = []
    killer = threading.Thread(target=kill_one_worker_after, args=(s.out, 4, killed))
    killer.start()
    asyncio.run(run_bench(s))
    killer.join()
    ok, lines = ok_lines(s.out)
    assert killed and killed[0][1] < 24  # killed mid-run
    assert len(lines) == len(ok) == 24 and len({r["key"] for r in ok}) == 24


def test_without_retries_the_killed_workers_items_fail_with_the_reason_and_a_rerun_finishes_them(tmp_path, local_ray):
    s = spec(tmp_path, n=12, seconds=0.2, ray=RayOptions(resources={"sim_gpu": 1}, retries=0))
    killed: list = []
    killer = threading.Thread(target=kill_one_worker_after, args=(s.out, 4, killed))
    killer.start()
    asyncio.run(run_bench(s))
    killer.join()
    ok, lines = ok_lines(s.out)
    failed = [r for r in lines if r["status"] == "failed"]
    assert killed and failed and len(ok) + len(failed) == 24
    assert all("Ray generator actor rendering this image died" in r["error"] for r in failed)
    asyncio.run(run_bench(spec(tmp_path, n=12, seconds=0.0)))
    ok, _ = ok_lines(s.out)
    assert len(ok) == len({r["key"] for r in ok}) == 24


def test_batches_form_on_the_actors(tmp_path, local_ray):
    pool = RayGeneratorPool(WorkerSketch(0.3), {}, RayOptions(resources={"sim_gpu": 1}, workers=1), max_batch=4,
                            max_wait=0.05)
    try:
        requests = [GenerationRequest(prompt="a cat", layout=Layout(), seed=i, width=64, height=64) for i in range(4)]
        started = time.perf_counter()
        threads = [threading.Thread(target=pool.generate, args=(r,)) for r in requests]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert time.perf_counter() - started < 1.0  # one batch of 4 (0.3 s), not 4 renders in turn (1.2 s)
        assert [g.image.size for g in pool.generate_batch(requests[:2])] == [(64, 64)] * 2
    finally:
        pool.close()


def test_generator_errors_come_back_as_they_are_and_a_bad_generator_fails_at_start(local_ray):
    pool = RayGeneratorPool(CountingGenerator(fail_on=1), {}, RayOptions(resources={"sim_gpu": 1}, workers=1))
    try:
        request = GenerationRequest(prompt="a cat", layout=Layout(), seed=0, width=64, height=64)
        with pytest.raises(RuntimeError, match="simulated crash of the generator"):
            pool.generate(request)
        assert pool.generate(request).image.size == (64, 64) and pool.worker_deaths == 0
    finally:
        pool.close()
    with pytest.raises(BackendError, match="could not be built on a Ray worker.*takes no model"):
        RayGeneratorPool("sketch", {"model": "x"}, RayOptions(resources={"sim_gpu": 1}, workers=1))


def test_worker_plan_one_actor_per_gpu_or_resource_unit():
    assert worker_plan({"GPU": 4.0, "CPU": 64.0}, RayOptions()) == (4, {"num_gpus": 1.0, "num_cpus": 0})
    assert worker_plan({"GPU": 2.0}, RayOptions(gpus_per_worker=0.5))[0] == 4
    assert worker_plan({"CPU": 8.0}, RayOptions()) == (1, {"num_gpus": 0.0, "num_cpus": 1})
    assert worker_plan({"CPU": 2.0, "sim_gpu": 2.0}, SIM) == (2, {"num_gpus": 0.0, "num_cpus": 0, "resources": {"sim_gpu": 1.0}})
    assert worker_plan({"GPU": 8.0}, RayOptions(workers=3))[0] == 3
    with pytest.raises(ConfigError, match="no room for a generator actor needing 1 sim_gpu"):
        worker_plan({"CPU": 2.0}, SIM)


# -- the command line, end to end: --ray, killed with SIGKILL mid-run, run again -----------------


def test_cli_ray_bench_killed_mid_run_and_rerun_has_every_record_once(tmp_path):
    """The issue's acceptance run: 20 prompts x 2 images through `bench --ray` (a local Ray runtime
    started by the command) with an OpenAI stub; the command is SIGKILLed once some records exist,
    run again, and ends with 40 ok records and no key twice."""
    import subprocess
    import sys

    from tests.stubs import PLANNER_ANSWERS, StubServer, openai_completion, step_in

    data = dataset(tmp_path, 20)
    out = tmp_path / "R"

    def answer(path, body):
        step = step_in(body)
        return 200, openai_completion("Reasoning: all there.\nScore: 5" if step == "reason" else PLANNER_ANSWERS[step])

    with StubServer(answer, delay=lambda n: 0.05) as stub:
        cmd = [sys.executable, "-m", "mllm_guidance", "bench", "--dataset", data, "--method", "full",
               "--images-per-prompt", "2", "--mllm", "openai:gpt-4o", "--mllm-base-url", stub.url + "/v1",
               "--generator", "sketch", "--ray", "--concurrency", "4", "--out", str(out), "--quiet"]
        env = {**os.environ, "OPENAI_API_KEY": "sk-test-0000000000000000000000", "RAY_USAGE_STATS_ENABLED": "0"}
        first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline and first.poll() is None:
            if (out / RESULTS).exists() and len((out / RESULTS).read_text().splitlines()) >= 6:
                break
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()  # still running: killed mid-run
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        before = len((out / RESULTS).read_text().splitlines())
        assert 6 <= before < 40
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    ok, lines = ok_lines(out)
    assert len(ok) == 40 and len({r["key"] for r in ok}) == 40
    assert len(lines) == 40  # the rerun wrote only what the killed run had not
    assert all((out / r["image"]).exists() for r in ok)
