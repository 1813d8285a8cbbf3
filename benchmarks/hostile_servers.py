"""Hostile clients and unlucky operators against the servers and the files they read (issue 20).

Runs each case once and prints the issue's figures: cases tried, clear errors, crashes (a
traceback or an untyped exception reaching the client), hangs over 5 s, leaks (a planted secret in
any file under the runs roots or in a server log), writes outside a client's own run (files changed
in another run's directory or outside the runs root), and whether the legitimate conversation
still works afterwards.

    python benchmarks/hostile_servers.py [--work DIR]

Needs the server extra (``langgraph dev``), the mcp and studio extras; runs on CPU with the
``replay:`` recording and the ``sketch`` generator.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECORDING = ROOT / "examples" / "recordings" / "man-under-tree.json"
PROMPT = "A man is sitting under a tree while a bird is in the tree."
SECRET = "sk-planted-secret-4242424242424242"
PASSWORD = "pa55-hostile-7319"
UNTYPED = ("Traceback", "KeyError", "TypeError", "AttributeError", "RecursionError", "MemoryError", "IndexError",
           "UnicodeDecodeError", "embedded null byte", "Errno")


class Tally:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float, str]] = []

    def case(self, name: str, run, expect_error: bool = True) -> None:
        started = time.perf_counter()
        try:
            outcome = run()
            message, raised = json.dumps(outcome, default=str) if not isinstance(outcome, str) else outcome, False
        except Exception as exc:  # noqa: BLE001 - every outcome is tallied
            message, raised = f"{type(exc).__name__}: {exc}", True
        seconds = time.perf_counter() - started
        first = message.splitlines()[0] if message else ""
        if seconds > 5:
            kind = "hang"
        elif any(word in message for word in UNTYPED) or (raised and not _ours(message)):
            kind = "crash"
        elif expect_error and ("error" in message.lower() or raised) and len(message) < 2000:
            kind = "clear"
        elif not expect_error:
            kind = "ok"
        else:
            kind = "unclear"
        self.rows.append((name, kind, seconds, first[:160]))
        print(f"{kind:7s} {seconds:6.2f}s  {name}: {first[:140]}", flush=True)

    def count(self, kind: str) -> int:
        return sum(1 for r in self.rows if r[1] == kind)


def _ours(message: str) -> bool:
    return message.split(":")[0] in {"InputError", "ConfigError", "BackendError", "ReplayError", "ParseError",
                                     "LayoutParseError", "StorageError", "ValidationError", "Error", "ToolError",
                                     "BadRequestError", "GuidanceError"}


def snapshot(folder: Path) -> dict[str, tuple[int, float]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime) for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


def leaks(paths: list[Path], texts: list[str]) -> int:
    found = 0
    for folder in paths:
        for p in folder.rglob("*") if folder.exists() else []:
            if p.is_file() and p.stat().st_size < 50_000_000:
                data = p.read_bytes()
                found += (SECRET.encode() in data) + (PASSWORD.encode() in data)
    return found + sum((SECRET in t) + (PASSWORD in t) for t in texts)


def langgraph_cases(t: Tally, work: Path) -> tuple[int, list[str]]:
    from langgraph_sdk import get_sync_client

    from tests.integrations.test_langgraph_server import start_dev

    outside_writes, logs = 0, []
    dev = start_dev(work / "lg", MLLM_GUIDANCE_CONFIG=json.dumps({"review": "plan+align"}), OPENAI_API_KEY=SECRET)
    base, runs, server = next(dev)
    drained: list[str] = []  # the server's log, read as it comes (a full pipe would stall the server)
    import threading

    threading.Thread(target=lambda: drained.extend(iter(server.stdout.readline, "")), daemon=True).start()
    client = get_sync_client(url=base, timeout=30)
    try:
        victim = client.threads.create()["thread_id"]
        client.runs.wait(victim, "mllm_guidance", input={"prompt": PROMPT, "seed": 0})
        [victim_dir] = list(runs.iterdir())
        before_victim = snapshot(victim_dir)
        me = client.threads.create()["thread_id"]
        client.runs.wait(me, "mllm_guidance", input={"prompt": PROMPT, "seed": 1})
        resume = lambda value: client.runs.wait(me, "mllm_guidance", command={"resume": value}, raise_error=False)  # noqa: E731
        for name, value in {
            "edit without objects": {"action": "edit", "layout": {"objects": []}},
            "edit without layout": {"action": "edit"},
            "unknown action": {"action": "delete"},
            "5 MB string": "x" * 5_000_000,
            "5 MB layout text": {"action": "edit", "layout": "- a [0.1, 0.1, 0.5, 0.5]\n" * 200_000},
            "a list": [1, 2, 3],
            "a number": 42,
            "action is a dict": {"action": {"x": [[[[1]]]]}},
            "null layout edit": {"action": "edit", "layout": None},
            "layout of 10,000 objects": {"action": "edit", "layout": {"objects": [
                {"name": "o", "box": {"x1": 0.1, "y1": 0.1, "x2": 0.2, "y2": 0.2}}] * 10_000}},
            "layout naming a secret file": {"action": "edit", "layout": "- /etc/passwd [0.1, 0.1, 0.5, 0.5]\n- " + SECRET + " [0.5, 0.5, 0.9, 0.9]"},
        }.items():
            def one(value=value):
                out = resume(value)
                state = client.threads.get_state(me)
                paused = [i for task in state["tasks"] for i in task["interrupts"]]
                if not paused and "__error__" in json.dumps(out):
                    return f"crash: not paused after a refused decision: {json.dumps(out)[:300]}"
                return out
            t.case(f"server review: {name}", one, expect_error=name != "layout naming a secret file")
        assistant = client.assistants.search(graph_id="mllm_guidance")[0]["assistant_id"]
        nodes = [n["id"] for n in client.assistants.get_graph(assistant)["nodes"] if not n["id"].startswith("__")]
        other = client.threads.create()["thread_id"]
        client.runs.wait(other, "mllm_guidance", input={"prompt": PROMPT, "seed": 2})
        (runs / "link").symlink_to(victim_dir)
        for node in nodes:
            for target in (str(victim_dir), "/etc", str(runs / ".." / ".."), str(runs / "link"), "x" * 5000):
                def steal(node=node, target=target):
                    client.threads.update_state(other, {"run_dir": target}, as_node=node)
                    return client.runs.wait(other, "mllm_guidance", command={"resume": "approve"}, raise_error=False)
                t.case(f"server thread state run_dir={target[:40]} as {node}", steal)
        for name, kwargs in {
            "context runs_dir": dict(input={"prompt": PROMPT}, context={"runs_dir": "/tmp", "templates_dir": "/etc"}),
            "context replay:/etc/passwd": dict(input={"prompt": PROMPT}, context={"mllm": "replay:/etc/passwd"}),
            "context replay:/dev/zero": dict(input={"prompt": PROMPT}, context={"mllm": "replay:/dev/zero"}),
            "context generator path": dict(input={"prompt": PROMPT}, context={"generator": "gligen:/srv/models"}),
            "seed -1": dict(input={"prompt": PROMPT, "seed": -1}),
            "seed 2**70": dict(input={"prompt": PROMPT, "seed": 2**70}),
            "empty prompt": dict(input={"prompt": ""}),
            "1 MB prompt": dict(input={"prompt": "a cat " * 200_000}),
            "prompt with NUL": dict(input={"prompt": "a cat\0on a mat"}),
            "knob max_align_rounds -3": dict(input={"prompt": PROMPT}, config={"configurable": {"max_align_rounds": -3}}),
            "knob is_good 'x'": dict(input={"prompt": PROMPT}, config={"configurable": {"is_good": "x"}}),
            "knob mode bogus": dict(input={"prompt": PROMPT}, config={"configurable": {"mode": "bogus"}}),
        }.items():
            expect_error = name != "context runs_dir"
            t.case(f"server start: {name}", lambda kwargs=kwargs: client.runs.wait(
                client.threads.create()["thread_id"], "mllm_guidance", raise_error=False, **kwargs), expect_error)

        def conversation():
            done = None
            for _ in range(10):
                done = client.runs.wait(me, "mllm_guidance", command={"resume": {"action": "approve"}})
                if not [i for task in client.threads.get_state(me)["tasks"] for i in task["interrupts"]]:
                    break
            scores = [r["score"] for r in done["rounds"]]
            assert done["stop_reason"] == "good" and scores == [3, 4, 5], (done["stop_reason"], scores)
            return f"good after {scores}"
        t.case("server: the legitimate conversation after all of that", conversation, expect_error=False)
        outside_writes += int(snapshot(victim_dir) != before_victim)
        outside = [p for p in (work / "lg").rglob("*") if p.is_file() and runs not in p.parents]
        outside_writes += len(outside)
    finally:
        server.terminate()
        server.wait(30)
        logs.append("".join(drained))
        try:
            next(dev)
        except StopIteration:
            pass
    return outside_writes, logs


def file_cases(t: Tally, work: Path) -> None:
    from mllm_guidance.cli import main

    os.mkfifo(work / "fifo.json")
    huge = work / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(17 * 1024 * 1024)
    (work / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    (work / "digits.jsonl").write_text('{"prompt": "a", "id": ' + "9" * 50_000 + "}\n")
    (work / "wide.csv").write_text("prompt\n" + "x" * 140_000 + "\n")
    tpl = work / "tpl"
    tpl.mkdir()
    (tpl / "place.txt").symlink_to("/dev/zero")

    def cli(*args):
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(list(args))
        text = err.getvalue().strip()
        return f"exit {code}: {text}" if code == 2 and len(text.splitlines()) == 1 else f"crash: exit {code}: {text[-300:]}"

    gen = lambda *a: ["generate", "a cat", "--mllm", f"replay:{RECORDING}", "--generator", "sketch", "--quiet",  # noqa: E731
                      "--out", str(work / f"o{len(t.rows)}"), *a]
    bench = lambda d: ["bench", "--dataset", d, "--method", "plain", "--generator", "sketch", "--quiet",  # noqa: E731
                       "--out", str(work / f"b{len(t.rows)}")]
    for name, args in {
        "replay:/dev/zero": gen("--mllm", "replay:/dev/zero"), "replay: a FIFO": gen("--mllm", f"replay:{work / 'fifo.json'}"),
        "replay: 17 MB file": gen("--mllm", f"replay:{huge}"), "templates: place.txt -> /dev/zero": gen("--templates", str(tpl)),
        "prices /dev/zero": gen("--prices", "/dev/zero"), "dataset /dev/zero": bench("/dev/zero"),
        "dataset FIFO": bench(str(work / "fifo.json")), "dataset 17 MB": bench(str(huge)),
        "dataset 100,000-deep JSONL": bench(str(work / "deep.jsonl")), "dataset 50,000-digit id": bench(str(work / "digits.jsonl")),
        "dataset 140,000-character CSV field": bench(str(work / "wide.csv")),
    }.items():
        t.case(f"file: {name}", lambda args=args: cli(*args))


def studio_cases(t: Tally, work: Path) -> None:
    from mllm_guidance import guide
    from mllm_guidance.studio.app import _errors
    from mllm_guidance.studio.views import bench_view, run_view

    runs, bench = work / "studio-runs", work / "studio-bench"
    guide(PROMPT, mllm=f"replay:{RECORDING}", generator="sketch", run_dir=runs / "good")
    (work / "keys.env").write_text(f"OPENAI_API_KEY={SECRET}\n")
    record = json.loads((runs / "good" / "run.json").read_text())
    record["rounds"][0]["image"]["path"] = str(work / "keys.env")
    (runs / "planted").mkdir()
    (runs / "planted" / "run.json").write_text(json.dumps(record))
    (bench / "b1").mkdir(parents=True)
    (bench / "b1" / "results.jsonl").write_text(json.dumps({"key": "k", "status": "ok", "image": str(work / "keys.env")}) + "\n")
    (bench / "b2").mkdir()
    (bench / "b2" / "results.jsonl").symlink_to("/dev/zero")
    (runs / "half").mkdir()
    (runs / "half" / "run.json").write_text('{"rounds": [{"index": 0}]}')
    (runs / "binary").mkdir()
    (runs / "binary" / "run.json").write_bytes(b"\xff\xfe\x00" * 100)
    shown = lambda f, *a: _errors(f)(*a)  # noqa: E731
    for name, call in {
        "run.json image path outside": lambda: shown(lambda: run_view(runs, "planted")),
        "results.jsonl image path outside": lambda: shown(lambda: bench_view(bench, "b1", False, True)),
        "results.jsonl -> /dev/zero": lambda: shown(lambda: bench_view(bench, "b2", False, True)),
        "run name with NUL": lambda: shown(lambda: run_view(runs, "a\0b")),
        "run name ../..": lambda: shown(lambda: run_view(runs, "../..")),
        "run name 5,000 characters": lambda: shown(lambda: run_view(runs, "x" * 5000)),
        "missing run": lambda: shown(lambda: run_view(runs, "nope")),
        "half a run.json": lambda: shown(lambda: run_view(runs, "half")),
        "binary run.json": lambda: shown(lambda: run_view(runs, "binary")),
    }.items():
        def one(call=call):
            import gradio as gr
            try:
                call()
            except gr.Error as exc:
                text = exc.message
                return f"Error: {text}" if len(text.splitlines()) == 1 and len(text) < 300 and str(work) not in text \
                    else f"crash: unclean message {text[:200]}"
            return "crash: shown"
        t.case(f"studio: {name}", one)


def mcp_cases(t: Tally, work: Path) -> None:
    from mllm_guidance.mcp_server import create_server

    t.case("mcp: --keep-runs 1 with --max-concurrent 4", lambda: create_server(
        mllm=f"replay:{RECORDING}", generator="sketch", runs_dir=work / "mcp", max_concurrent=4, keep_runs=1))
    import logging

    import httpx

    import mllm_guidance  # noqa: F401
    from tests.stubs import StubServer

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(self.format(record))

    handler = Keep()
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        with StubServer(lambda path, body: (200, {})) as stub:
            httpx.get(stub.url.replace("http://", f"http://op:{PASSWORD}@") + "/v1/models")
    finally:
        logging.getLogger().removeHandler(handler)
    t.case("logs: httpx request line with URL credentials", lambda: "\n".join(seen), expect_error=False)
    return seen


def parser_cases(t: Tally) -> None:
    from mllm_guidance.prompts.parse import parse_layout

    for name, answer in {"[0.9, 0.9, 0.1, 0.1]": "Objects:\n- a cat [0.9, 0.9, 0.1, 0.1]",
                         "zero-area box": '{"objects": [{"name": "a cat", "box": [5e-324, 0, 1e-320, 5e-324]}]}',
                         "zero-width name": "Objects:\n- \u200b\u200b [0.1, 0.1, 0.5, 0.5]",
                         "non-string JSON name": '{"objects": [{"name": 5, "box": [0.1, 0.1, 0.5, 0.5]}]}'}.items():
        t.case(f"parser: {name}", lambda answer=answer: parse_layout(answer))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="hostile-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    t = Tally()
    outside, logs = langgraph_cases(t, work)
    file_cases(t, work)
    studio_cases(t, work)
    logs += mcp_cases(t, work)
    parser_cases(t)
    leaked = leaks([work / "lg", work / "studio-runs"], logs)
    print(f"\ncases tried {len(t.rows)}, clear errors {t.count('clear')}, expected successes {t.count('ok')}, "
          f"crashes {t.count('crash')}, unclear {t.count('unclear')}, hangs over 5 s {t.count('hang')}, "
          f"leaks {leaked}, writes outside a client's own run {outside}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
