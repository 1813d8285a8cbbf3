"""The exported server graph in process, and `langgraph dev` (in-memory server) driven by the
official `langgraph_sdk` client: schemas, a run, a second run on the same thread, and what a client
may not choose (issue 10 items 1-2, issue 15 items 2 and 5)."""

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from mllm_guidance.errors import ConfigError
from tests.stubs import StubServer, openai_completion
from tests.cli.test_cli import PROMPT, RECORDING

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def operator(tmp_path, monkeypatch):
    """The operator's settings: a recording and the sketch generator, runs under tmp_path/runs."""
    monkeypatch.setenv("MLLM_GUIDANCE_MLLM", f"replay:{RECORDING}")
    monkeypatch.setenv("MLLM_GUIDANCE_GENERATOR", "sketch")
    monkeypatch.setenv("MLLM_GUIDANCE_RUNS_DIR", str(tmp_path / "runs"))
    for name in ("MLLM_GUIDANCE_ALLOWED_MLLMS", "MLLM_GUIDANCE_ALLOWED_GENERATORS", "MLLM_GUIDANCE_MLLM_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "runs"


def test_the_exported_graph_runs_on_the_operators_settings(operator):
    from mllm_guidance.server import ServerContext, graph

    assert graph.checkpointer is None
    out = graph.invoke({"prompt": PROMPT, "seed": 0}, context=ServerContext())
    assert out["stop_reason"] == "good" and len(out["rounds"]) == 3
    run_dirs = list(operator.iterdir())
    assert len(run_dirs) == 1 and out["run_dir"] == str(run_dirs[0])
    assert (Path(out["run_dir"]) / out["final_image"].path).exists() and (run_dirs[0] / "report.html").exists()
    assert set(out) == {"prompt", "stop_reason", "best", "rounds", "final_image", "run_dir"}  # the output schema


def test_per_run_knobs_go_in_configurable(operator):
    """Issue 15, item 5: mode and K per run, through the graph factory the server loads."""
    from mllm_guidance.server import ServerContext, make_graph

    place = make_graph({"configurable": {"mode": "place", "thread_id": "t"}})
    out = place.invoke({"prompt": PROMPT}, {"configurable": {"mode": "place", "thread_id": "t"}}, context=ServerContext())
    assert out["stop_reason"] == "rendered" and len(out["rounds"]) == 1
    run = json.loads((Path(out["run_dir"]) / "run.json").read_text())
    assert run["config"]["mode"] == "place"
    with pytest.raises(ConfigError, match="is_good"):
        make_graph({"configurable": {"is_good": "always"}})
    with pytest.raises(ConfigError, match="max_rounds"):
        make_graph({"configurable": {"max_rounds": -3}})
    with pytest.raises(ConfigError, match="'max_align_rounds' is now 'max_rounds'"):
        make_graph({"configurable": {"max_align_rounds": 2}})
    with pytest.raises(ConfigError, match="the seed goes in the run's input"):
        make_graph({"configurable": {"seed": 3}})


def test_the_operator_narrows_what_clients_may_set(operator, monkeypatch):
    """Issue 26, items 1-2: the operator's MLLM_GUIDANCE_CLIENT_* settings narrow the shared knobs."""
    from mllm_guidance.server import client_knobs, make_graph

    assert client_knobs().model_json_schema()["properties"]["max_rounds"]["anyOf"][0]["maximum"] == 20
    make_graph({"configurable": {"max_rounds": 20, "candidates": 2, "verifier": "clip"}})
    monkeypatch.setenv("MLLM_GUIDANCE_CLIENT_MAX_ROUNDS", "3")
    monkeypatch.setenv("MLLM_GUIDANCE_CLIENT_KNOBS", "mode,max_rounds,is_good")
    make_graph({"configurable": {"max_rounds": 3}})
    with pytest.raises(ConfigError, match="max_rounds: Input should be less than or equal to 3"):
        make_graph({"configurable": {"max_rounds": 4}})
    with pytest.raises(ConfigError, match="candidates: this server does not let clients set it"):
        make_graph({"configurable": {"candidates": 2}})
    monkeypatch.setenv("MLLM_GUIDANCE_CLIENT_MODES", "full,nonsense")
    with pytest.raises(ConfigError, match="MLLM_GUIDANCE|unknown"):
        make_graph({"configurable": {}})


def test_clients_choose_no_urls_paths_or_unlisted_backends(operator, monkeypatch, tmp_path):
    from mllm_guidance.server import ServerContext, graph

    for key, value in (("mllm_base_url", "http://127.0.0.1:9/v1"), ("runs_dir", "/tmp/x"), ("runs_dir", "../.."),
                       ("templates_dir", "/etc")):
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            ServerContext(**{key: value})
    for context, what in ((ServerContext(mllm="replay:/etc/passwd"), "mllm 'replay:/etc/passwd'"),
                          (ServerContext(generator="gligen:/srv/models/private"), "generator 'gligen:/srv/models/private'"),
                          (ServerContext(mllm="openai:gpt-4o"), "mllm 'openai:gpt-4o'")):
        with pytest.raises(ConfigError, match=f"does not let clients choose the {what}"):
            graph.invoke({"prompt": PROMPT}, context=context)
    assert not operator.exists() or not list(operator.iterdir())  # refused before a run directory was made
    monkeypatch.setenv("MLLM_GUIDANCE_ALLOWED_GENERATORS", "text2image:x, sketch")
    assert graph.invoke({"prompt": PROMPT}, context=ServerContext(generator="sketch"))["stop_reason"] == "good"


def test_state_sent_as_input_cannot_name_files_outside_the_run(operator):
    """Only prompt and seed are input; a reference to a file outside the run directory is refused
    wherever it comes from."""
    from mllm_guidance.server import ServerContext, graph
    from mllm_guidance.state import ImageRef
    from mllm_guidance.store import RunStore
    from mllm_guidance.errors import InputError

    planted = {"path": "/etc/passwd", "sha256": "0" * 64, "width": 8, "height": 8, "bytes": 1}
    out = graph.invoke({"prompt": PROMPT, "seed": 0, "final_image": planted, "best": 0}, context=ServerContext())
    assert out["final_image"].path == "final.png"
    store = RunStore(operator / "probe")
    for name in ("/etc/passwd", "../../etc/passwd", "../probe2/x.png"):
        with pytest.raises(InputError, match="is not a file of the run directory"):
            store.load_image(ImageRef(path=name, sha256="0" * 64, width=8, height=8, bytes=1))


def test_the_servers_key_never_goes_to_a_url_a_client_names(operator, monkeypatch):
    """The reproduced hole: a client-set base URL received the server's key. Now the context that
    names one is refused, and only the operator's URL is ever called."""
    from mllm_guidance.server import ServerContext, graph

    monkeypatch.setenv("OPENAI_API_KEY", "sk-server-key-0000000000000000")
    answer = (200, openai_completion("Objects:\n- a cat [0.1, 0.1, 0.5, 0.5]"))
    with StubServer(lambda path, body: answer) as attacker, StubServer(lambda path, body: answer) as own:
        with pytest.raises(ValidationError):
            graph.invoke({"prompt": PROMPT}, context=ServerContext(mllm_base_url=attacker.url + "/v1"))
        monkeypatch.setenv("MLLM_GUIDANCE_ALLOWED_MLLMS", "openai:gpt-4o")
        monkeypatch.setenv("MLLM_GUIDANCE_MLLM_BASE_URL", own.url + "/v1")
        out = graph.invoke({"prompt": PROMPT}, context=ServerContext(mllm="openai:gpt-4o"))
    assert out["final_image"] is not None and attacker.requests == []
    assert own.requests and own.requests[0][1]["authorization"] == "Bearer sk-server-key-0000000000000000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dev(tmp_path, **extra_env):
    """`langgraph dev` on a free port with the operator's settings; yields (base URL, runs root, process)."""
    if shutil.which("langgraph") is None:
        pytest.skip("langgraph-cli[inmem] is not installed")
    port = free_port()
    env = {**os.environ, "MLLM_GUIDANCE_MLLM": f"replay:{RECORDING}", "MLLM_GUIDANCE_GENERATOR": "sketch",
           "MLLM_GUIDANCE_RUNS_DIR": str(tmp_path / "runs"), "LANGSMITH_TRACING": "false",
           "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGCHAIN_TRACING_V2": "false", **extra_env}
    env.pop("MLLM_GUIDANCE_ALLOWED_MLLMS", None)
    server = subprocess.Popen(["langgraph", "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser",
                               "--no-reload", "--config", str(ROOT / "langgraph.json")],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/ok", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                pytest.fail("langgraph dev did not start:\n" + (server.stdout.read() if server.stdout else ""))
            time.sleep(0.5)
    try:
        yield base, tmp_path / "runs", server
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def langgraph_dev(tmp_path):
    yield from start_dev(tmp_path)


@pytest.fixture
def langgraph_dev_with_review(tmp_path):
    yield from start_dev(tmp_path, MLLM_GUIDANCE_CONFIG=json.dumps({"review": "plan"}))


def test_langgraph_dev_through_the_sdk_client(langgraph_dev):
    from langgraph_sdk import get_sync_client

    base, runs, server = langgraph_dev
    client = get_sync_client(url=base)
    assistant = client.assistants.search(graph_id="mllm_guidance")[0]["assistant_id"]
    schemas = client.assistants.get_schemas(assistant)
    assert set(schemas["input_schema"]["properties"]) == {"prompt", "seed"}
    assert "run_dir" in schemas["output_schema"]["properties"]
    assert set(schemas["context_schema"]["properties"]) == {"mllm", "generator"}
    thread = client.threads.create()
    first = client.runs.wait(thread["thread_id"], "mllm_guidance", input={"prompt": PROMPT, "seed": 0})
    one_round = client.runs.wait(client.threads.create()["thread_id"], "mllm_guidance", input={"prompt": PROMPT},
                                 config={"configurable": {"max_rounds": 0}})
    assert len(one_round["rounds"]) == 1 and one_round["stop_reason"] == "max_rounds", one_round
    assert first["stop_reason"] == "good" and first["best"] == 2, first
    assert Path(first["run_dir"]).parent == runs.resolve() and (Path(first["run_dir"]) / "final.png").exists()
    assert "base64" not in json.dumps(first)
    # a second prompt on the same thread is a new run, not the old one's leftovers
    second = client.runs.wait(thread["thread_id"], "mllm_guidance", input={"prompt": PROMPT, "seed": 1})
    assert second["stop_reason"] == "good" and second["run_dir"] != first["run_dir"] and len(second["rounds"]) == 3
    # what the client may not choose: refused, and no run directory made for it
    refused = client.runs.wait(thread["thread_id"], "mllm_guidance", input={"prompt": PROMPT},
                               context={"mllm": "replay:/etc/passwd"}, raise_error=False)
    assert "does not let clients choose the mllm" in json.dumps(refused)
    assert len(list(runs.iterdir())) == 3
    server.terminate()
    log = server.stdout.read()
    assert "unregistered type" not in log  # the state's classes are registered (LANGGRAPH_STRICT_MSGPACK in langgraph.json)


def test_a_review_pause_shows_as_an_interrupt_and_a_command_resumes_it(langgraph_dev_with_review):
    """Issue 14, item 1 on the server: the run stops at the plan review (as Studio shows it); a client
    resumes it with Command(resume=...) and the edited layout is what was rendered, in one run directory."""
    from langgraph_sdk import get_sync_client

    base, runs, _ = langgraph_dev_with_review
    client = get_sync_client(url=base)
    thread = client.threads.create()["thread_id"]
    client.runs.wait(thread, "mllm_guidance", input={"prompt": PROMPT, "seed": 0})
    state = client.threads.get_state(thread)
    [pause] = [i for task in state["tasks"] for i in task["interrupts"]]
    assert pause["value"]["stage"] == "plan" and len(pause["value"]["layout"]["objects"]) == 3
    mine = {"objects": [{"name": "a man on a bench", "box": {"x1": 0.05, "y1": 0.5, "x2": 0.4, "y2": 0.95}},
                        {"name": "a tree", "box": {"x1": 0.4, "y1": 0.02, "x2": 0.98, "y2": 0.95}}]}
    done = client.runs.wait(thread, "mllm_guidance", command={"resume": {"action": "edit", "layout": mine}})
    assert [o["name"] for o in done["rounds"][0]["layout"]["objects"]] == ["a man on a bench", "a tree"]
    run_dir = Path(done["run_dir"])
    assert [p.name for p in runs.iterdir()] == [run_dir.name]  # paused and continued in one directory
    assert (run_dir / "review-0.png").exists() and (run_dir / "final.png").exists()
    assert json.loads((run_dir / "run.json").read_text())["reviews"][0]["action"] == "edit"


# --- issue 20: the server's runs go through the run layer ------------------------------------------------


def test_a_template_set_the_config_cannot_use_is_refused_before_any_call(operator, monkeypatch, tmp_path):
    """Item 1: the same check as the Python API, before any call and before a run directory exists."""
    from mllm_guidance.server import ServerContext, graph

    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "align.txt").write_text("Align it.\n=== request ===\nPrompt: $prompt\n")
    monkeypatch.setenv("MLLM_GUIDANCE_RUN_SETTINGS", json.dumps({"templates_dir": str(tmp_path / "tpl")}))
    with pytest.raises(ConfigError, match="no '=== empty answer ===', '=== evaluation ===', '=== layout ===' block"):
        graph.invoke({"prompt": PROMPT}, context=ServerContext())
    assert not operator.exists() or not list(operator.iterdir())


def test_every_server_run_is_set_up_by_the_run_layer(operator):
    """Item 1: spec.json (the RunSpec) is written before the first step, with the server's thread id;
    the guidance graph's nodes get a Context only, so no setup can run inside them."""
    from mllm_guidance import build_graph
    from mllm_guidance.context import Context
    from mllm_guidance.server import ServerContext, graph

    out = graph.invoke({"prompt": PROMPT, "seed": 0}, {"configurable": {"thread_id": "thread-a"}}, context=ServerContext())
    spec = json.loads((Path(out["run_dir"]) / "spec.json").read_text())
    assert spec["thread_id"] == "thread-a" and spec["prompt"] == PROMPT and spec["seed"] == 0
    assert "on_finish" not in Context.__dataclass_fields__  # evidence is the run layer's, not a node's
    with pytest.raises(ConfigError, match="context=Context"):
        build_graph().invoke({"prompt": PROMPT}, context=ServerContext())


def test_a_negative_seed_is_refused(operator):
    """Item 13: the input schema says seed >= 0, and the server holds to it."""
    from mllm_guidance.server import ServerContext, graph

    with pytest.raises(Exception, match="seed"):
        graph.invoke({"prompt": PROMPT, "seed": -1}, context=ServerContext())
    assert not operator.exists() or not list(operator.iterdir())


@pytest.fixture
def langgraph_dev_plan_align(tmp_path):
    yield from start_dev(tmp_path, MLLM_GUIDANCE_CONFIG=json.dumps({"review": "plan+align"}))


def pauses(client, thread):
    state = client.threads.get_state(thread)
    return [i for task in state["tasks"] for i in task["interrupts"]]


def test_a_bad_decision_is_refused_unsaved_and_replay_continues_in_order(langgraph_dev_plan_align):
    """Items 2 and 3: a bad decision (an edit without objects, a 5 MB string) is refused with a short
    message and the run stays paused; the next valid one continues. Approving every pause replays
    the recording's answers in order (reason scores 3, 4, 5, stop good), as the Python resume does."""
    from langgraph_sdk import get_sync_client

    base, runs, server = langgraph_dev_plan_align
    client = get_sync_client(url=base)
    thread = client.threads.create()["thread_id"]
    client.runs.wait(thread, "mllm_guidance", input={"prompt": PROMPT, "seed": 0})
    [pause] = pauses(client, thread)
    assert pause["value"]["stage"] == "plan"
    bad = client.runs.wait(thread, "mllm_guidance", command={"resume": {"action": "edit", "layout": {"objects": []}}},
                           raise_error=False)
    assert "no objects" in json.dumps(bad), bad
    [still] = pauses(client, thread)
    assert still["value"]["stage"] == "plan"
    huge = client.runs.wait(thread, "mllm_guidance", command={"resume": {"action": "edit", "layout": "x" * 5_000_000}},
                            raise_error=False)
    assert len(json.dumps(huge)) < 2000 and "characters" in json.dumps(huge), str(huge)[:3000]
    done = None
    for _ in range(10):
        done = client.runs.wait(thread, "mllm_guidance", command={"resume": {"action": "approve"}})
        if not pauses(client, thread):
            break
    assert done["stop_reason"] == "good", done
    assert [r["score"] for r in done["rounds"]] == [3, 4, 5]
    assert len(list(runs.iterdir())) == 1
    server.terminate()
    assert "x" * 10_000 not in server.stdout.read()  # the 5 MB decision is not echoed into the log either


def test_a_thread_cannot_continue_another_threads_run(langgraph_dev_with_review):
    """Item 4: a client that writes another run's directory into its thread state is refused, and
    nothing is written into that directory."""
    from langgraph_sdk import get_sync_client

    base, runs, _ = langgraph_dev_with_review
    client = get_sync_client(url=base)
    victim, attacker = client.threads.create()["thread_id"], client.threads.create()["thread_id"]
    client.runs.wait(victim, "mllm_guidance", input={"prompt": PROMPT, "seed": 0})
    [victim_dir] = list(runs.iterdir())
    before = sorted(p.name for p in victim_dir.iterdir())
    client.runs.wait(attacker, "mllm_guidance", input={"prompt": PROMPT, "seed": 1})
    assistant = client.assistants.search(graph_id="mllm_guidance")[0]["assistant_id"]
    nodes = [n["id"] for n in client.assistants.get_graph(assistant)["nodes"] if not n["id"].startswith("__")]
    answers = []
    for node in nodes:  # whichever step the client claims to be, its run_dir is not honoured
        client.threads.update_state(attacker, {"run_dir": str(victim_dir)}, as_node=node)
        answers.append(client.runs.wait(attacker, "mllm_guidance", command={"resume": {"action": "approve"}},
                                        raise_error=False))
    assert sorted(p.name for p in victim_dir.iterdir()) == before, answers
    assert not (victim_dir / "run.json").exists()


def test_extra_context_keys_are_ignored_as_security_md_says(langgraph_dev):
    """Item 13: `langgraph dev` drops context keys its schema does not list; SECURITY.md says so, and
    such a key changes nothing (the run is in the runs root, on the operator's backends)."""
    from langgraph_sdk import get_sync_client

    base, runs, _ = langgraph_dev
    client = get_sync_client(url=base)
    out = client.runs.wait(client.threads.create()["thread_id"], "mllm_guidance", input={"prompt": PROMPT},
                           context={"runs_dir": "/tmp", "templates_dir": "/etc", "mllm_base_url": "http://127.0.0.1:9"})
    assert Path(out["run_dir"]).parent == runs.resolve() and out["stop_reason"] == "good"
    security = (ROOT / "SECURITY.md").read_text()
    assert "is ignored: `langgraph dev` drops keys" in security and "refused by the context schema" not in security


def test_no_password_in_the_langgraph_dev_log(tmp_path):
    """Item 8: the operator's MLLM URL holds credentials; httpx's request lines in `langgraph dev`'s
    log show it masked."""
    from langgraph_sdk import get_sync_client

    answer = (200, openai_completion("Objects:\n- a man [0.1, 0.4, 0.5, 0.95]\n- a tree [0.4, 0.05, 0.95, 0.9]"))
    with StubServer(lambda path, body: answer) as own:
        url = own.url.replace("http://", "http://operator:pa55-word-9931@") + "/v1"
        for base, runs, server in start_dev(tmp_path, MLLM_GUIDANCE_MLLM="openai:gpt-4o", MLLM_GUIDANCE_MLLM_BASE_URL=url,
                                            OPENAI_API_KEY="sk-operator-key-00000000000000",
                                            MLLM_GUIDANCE_CONFIG=json.dumps({"mode": "place", "self_correct": False})):
            client = get_sync_client(url=base)
            out = client.runs.wait(client.threads.create()["thread_id"], "mllm_guidance", input={"prompt": PROMPT})
            assert out["stop_reason"] == "rendered", out
            server.terminate()
            log = server.stdout.read()
    assert own.requests and "HTTP Request" in log, log[-3000:]
    assert "pa55-word-9931" not in log and "sk-operator-key" not in log
