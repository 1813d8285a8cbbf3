"""Planted secrets never leave the process: every sink, each with a planted key (issue 10, item 6).

Four kinds of secret are planted: an API key in the environment whose shape matches no known
provider (found only because its variable's name says it is a secret), a provider-shaped key that
is in no variable, a password inside ``--mllm-base-url``, and a key in the URL's query string.
They reach the run the ways a careless user or a hostile model would bring them: in the prompt,
echoed by the model in its reasoning and object names, quoted in an unreadable answer, in a
generator's exception, in a provider's raw error, in the server URL. Each scenario then reads one
sink (a file of the run directory, the checkpoint database, a benchmark record, stdout, stderr, a
``--debug`` traceback, an exception's message, a LangSmith payload, the pixels of an overlay)
and finds none of them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from mllm_guidance import guide
from mllm_guidance.cli import main
from mllm_guidance.errors import BackendError
from tests.fakes import ALIGNED, PLACE, CountingGenerator, RecordingChatModel, StepChatModel, score
from tests.stubs import PLANNER_ANSWERS, StubServer, openai_completion, openai_error, step_in

KEY = "planted-7Qx9Zr2LmW4tK8vB3nHc"  # OPENAI_API_KEY's value: no known key shape
SHAPED = "sk-proj-PLANTEDshape0123456789abcdef"  # a provider's shape, in no variable
PASSWORD = "pw-Pl4nted-S3cretWord"  # user:password@ in the server URL
QUERY_KEY = "qk-Pl4nted-9f8e7d6c5b"  # ?api_key= in the server URL
SECRETS = (KEY, SHAPED, PASSWORD, QUERY_KEY)
PROMPT = f"A man is sitting under a tree while a bird is in the tree, my key is {KEY} and {SHAPED}"


def leaked(data: str | bytes) -> list[str]:
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "backslashreplace")
    return [s for s in SECRETS if s.encode() in raw]


def files_under(root: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.suffix != ".png")


@pytest.fixture(autouse=True)
def planted_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")


class Leaky(CountingGenerator):
    name = "leaky"

    def generate(self, request):
        raise RuntimeError(f"CUDA said no; the token was {KEY}, see {SHAPED}")


def echoing_model() -> RecordingChatModel:
    """A model that repeats the secrets it was sent: in reasoning, in object names, in scores."""
    place = PLACE.replace("a tree", f"a tree labelled {KEY}")
    return RecordingChatModel(replies={
        "place": [place], "self_correct": [f"Reasoning: your key {KEY} is safe with me.\nUpdated objects:\n" + place.split("\n", 1)[1]],
        "reason": [score(2, f"I see {KEY} and {SHAPED} written on the tree"), score(5, f"fine, {KEY}")],
        "align": [ALIGNED.replace("bird perched", f"bird {SHAPED} perched")],
    })


def echo_stub(path, body):
    """The OpenAI stub, repeating the key in every answer."""
    answer = PLANNER_ANSWERS[step_in(body)].replace("a tree", f"a tree {KEY}")
    if step_in(body) == "reason":
        answer = f"Reasoning: the tree says {KEY}.\nScore: 5"
    return 200, openai_completion(answer)


# -- the runs the scenarios read (each made once per test that needs it) -----------------------


def echo_run(tmp_path: Path) -> tuple[Path, object]:
    result = guide(PROMPT, mllm=echoing_model(), generator="sketch", run_dir=tmp_path / "run")
    return tmp_path / "run", result


def failed_run(tmp_path: Path) -> tuple[Path, str]:
    with pytest.raises(BackendError) as info:
        guide(PROMPT, mllm=echoing_model(), generator=Leaky(), run_dir=tmp_path / "run")
    return tmp_path / "run", str(info.value)


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def url_with_secrets(stub: StubServer) -> str:
    host = stub.url.removeprefix("http://")
    return f"http://mluser:{PASSWORD}@{host}/v1?api_key={QUERY_KEY}"


def bench_dataset(tmp_path: Path) -> str:
    path = tmp_path / "leaky.jsonl"
    path.write_text(json.dumps({"id": "p1", "prompt": PROMPT}) + "\n" + json.dumps({"id": "p2", "prompt": f"a cat and {KEY}"}) + "\n")
    return str(path)


# -- the scenarios: one sink each ------------------------------------------------------------


def s_prompt_spec_json(tmp_path, capsys):
    run_dir, _ = echo_run(tmp_path)
    return (run_dir / "spec.json").read_bytes()


def s_prompt_and_echo_run_json(tmp_path, capsys):
    run_dir, _ = echo_run(tmp_path)
    return (run_dir / "run.json").read_bytes()


def s_echo_report_html(tmp_path, capsys):
    run_dir, _ = echo_run(tmp_path)
    return (run_dir / "report.html").read_bytes()


def s_echo_checkpoints_sqlite(tmp_path, capsys):
    run_dir, _ = echo_run(tmp_path)
    return (run_dir / "checkpoints.sqlite").read_bytes()


def s_echo_calls_jsonl(tmp_path, capsys):
    run_dir, _ = echo_run(tmp_path)
    return (run_dir / "calls.jsonl").read_bytes()


def s_echo_api_result(tmp_path, capsys):
    _, result = echo_run(tmp_path)
    return result.model_dump_json()


def s_echo_overlay_pixels(tmp_path, capsys):
    """An object named with the key is drawn as the mask would be: the pixels carry no key."""
    from mllm_guidance.draw import draw_caption, draw_layout
    from mllm_guidance.layout import Box, Layout, LayoutObject

    canvas = Image.new("RGB", (512, 256), "white")

    def drawn(name: str) -> bytes:
        layout = Layout(objects=[LayoutObject(name=f"a tree {name}", box=Box(x1=0.1, y1=0.1, x2=0.9, y2=0.9))])
        return draw_layout(canvas, layout).tobytes() + draw_caption(canvas, f"a cat {name}").tobytes()

    return b"" if drawn(KEY) == drawn("***") else KEY.encode()


def s_generator_error_exception(tmp_path, capsys):
    _, message = failed_run(tmp_path)
    return message


def s_generator_error_checkpoint(tmp_path, capsys):
    run_dir, _ = failed_run(tmp_path)
    return (run_dir / "checkpoints.sqlite").read_bytes()


def s_generator_error_cli_line(tmp_path, capsys, monkeypatch):
    from mllm_guidance.backends import registry

    monkeypatch.setitem(registry.BUILTIN, "leaky", "tests.run.test_secrets:Leaky")
    registry._cache.clear()
    with StubServer(echo_stub) as stub:
        code, out, err = cli(["generate", PROMPT, "--mllm", "openai:gpt-4o", "--mllm-base-url", stub.url + "/v1",
                              "--generator", "leaky", "--out", str(tmp_path / "g")], capsys)
    registry._cache.clear()
    assert code == 3 and "CUDA said no" in err  # the run ended without its image
    return out + err


def s_cli_generate_json(tmp_path, capsys):
    with StubServer(echo_stub) as stub:
        code, out, err = cli(["generate", PROMPT, "--mllm", "openai:gpt-4o", "--mllm-base-url", stub.url + "/v1",
                              "--generator", "sketch", "--json", "--out", str(tmp_path / "j")], capsys)
    assert code == 0 and json.loads(out)["score"] == 5
    return out + err


def s_cli_generate_text_and_progress(tmp_path, capsys):
    answers = iter([f"Objects:\n- a tree {KEY} [a, b, c, d]"])  # unreadable: its error quotes the label

    def respond(path, body):
        first = next(answers, None) if step_in(body) == "place" else None
        return (200, openai_completion(first)) if first else echo_stub(path, body)

    with StubServer(respond) as stub:
        code, out, err = cli(["generate", PROMPT, "--mllm", "openai:gpt-4o", "--mllm-base-url", stub.url + "/v1",
                              "--generator", "sketch", "--out", str(tmp_path / "t")], capsys)
    assert code == 0 and "unreadable answer" in err
    return out + err


def s_cli_plan_text(tmp_path, capsys):
    with StubServer(echo_stub) as stub:
        code, out, err = cli(["plan", PROMPT, "--mllm", "openai:gpt-4o", "--mllm-base-url", stub.url + "/v1",
                              "--out", str(tmp_path / "p")], capsys)
    assert code == 0 and "- a tree ***" in out
    return out + err


def s_cli_plan_json(tmp_path, capsys):
    with StubServer(echo_stub) as stub:
        code, out, err = cli(["plan", PROMPT, "--mllm", "openai:gpt-4o", "--mllm-base-url", stub.url + "/v1", "--json",
                              "--correct-rounds", "0", "--out", str(tmp_path / "p")], capsys)
    assert code == 0
    return out + err


def s_url_password_spec_and_run_json(tmp_path, capsys):
    with StubServer(echo_stub) as stub:
        code, out, err = cli(["generate", "a cat on a sofa", "--mllm", "openai:gpt-4o", "--mllm-base-url", url_with_secrets(stub),
                              "--generator", "sketch", "--out", str(tmp_path / "u")], capsys)
    assert code == 0
    spec = json.loads((tmp_path / "u" / "spec.json").read_text())
    assert spec["mllm"]["options"]["base_url"].startswith("http://***@127.0.0.1:")
    return (tmp_path / "u" / "spec.json").read_bytes() + (tmp_path / "u" / "run.json").read_bytes() + files_under(tmp_path / "u")


def s_url_password_error_line(tmp_path, capsys):
    with StubServer(lambda p, b: openai_error(500, "upstream down")) as stub:
        code, out, err = cli(["generate", "a cat on a sofa", "--mllm", "openai:gpt-4o", "--mllm-base-url", url_with_secrets(stub),
                              "--mllm-retries", "0", "--generator", "sketch", "--out", str(tmp_path / "e")], capsys)
    assert code == 2 and "kept failing" in err and "mluser" not in err
    return out + err


def s_url_password_api_exception(tmp_path, capsys):
    with StubServer(lambda p, b: openai_error(401, "who are you")) as stub:
        with pytest.raises(BackendError) as info:
            guide("a cat on a sofa", mllm="openai:gpt-4o", generator="sketch", run_dir=tmp_path / "x",
                  mllm_options={"base_url": url_with_secrets(stub), "retries": 0})
    return str(info.value) + repr(info.value.args)


def s_debug_traceback_of_a_provider_error(tmp_path, capsys):
    with StubServer(lambda p, b: openai_error(400, f"invalid request; key {KEY} / {SHAPED} is not allowed here")) as stub:
        code, out, err = cli(["generate", "a cat on a sofa", "--mllm", "openai:gpt-4o", "--mllm-base-url", url_with_secrets(stub),
                              "--generator", "sketch", "--debug", "--out", str(tmp_path / "d")], capsys)
    assert code == 2 and "Traceback" in err
    return out + err


def s_bench_results_jsonl_prompts(tmp_path, capsys):
    from mllm_guidance.eval.runner import BenchSpec, run_bench

    spec = BenchSpec(dataset=bench_dataset(tmp_path), out=tmp_path / "b", mllm=StepChatModel(), generator="sketch")
    records = asyncio.run(run_bench(spec))
    assert [r["status"] for r in records] == ["ok", "ok"]
    return (tmp_path / "b" / "results.jsonl").read_bytes()


def s_bench_results_jsonl_errors(tmp_path, capsys):
    from mllm_guidance.eval.runner import BenchSpec, run_bench

    spec = BenchSpec(dataset=bench_dataset(tmp_path), out=tmp_path / "b", mllm=StepChatModel(), generator=Leaky())
    records = asyncio.run(run_bench(spec))
    assert [r["status"] for r in records] == ["failed", "failed"] and "CUDA said no" in records[0]["error"]
    return (tmp_path / "b" / "results.jsonl").read_bytes()


def s_bench_cli_every_file_and_line(tmp_path, capsys):
    with StubServer(echo_stub) as stub:
        code, out, err = cli(["bench", "--dataset", bench_dataset(tmp_path), "--mllm", "openai:gpt-4o",
                              "--mllm-base-url", url_with_secrets(stub), "--generator", "sketch", "--out", str(tmp_path / "b")], capsys)
    assert code == 0
    return out.encode() + err.encode() + files_under(tmp_path / "b")


def s_langsmith_trace_payloads(tmp_path, capsys):
    from mllm_guidance.evidence.tracing import image_safe_client, image_safe_tracer

    with StubServer(lambda path, body: (200, {})) as stub:
        client = image_safe_client(api_url=stub.url, api_key="ls-test-key", auto_batch_tracing=False)
        tracer = image_safe_tracer(client, project_name="secrets")
        guide(PROMPT, mllm=echoing_model(), generator="sketch", run_dir=tmp_path / "ok", callbacks=[tracer])
        with pytest.raises(BackendError):
            guide(PROMPT, mllm=echoing_model(), generator=Leaky(), run_dir=tmp_path / "failed", callbacks=[tracer])
        tracer.wait_for_futures()
        bodies = [json.dumps(b) for path, _, b in stub.requests if path.startswith("/runs")]
    assert len(bodies) > 10 and "CUDA said no" in "".join(bodies)
    return "\n".join(bodies)


def s_shaped_key_not_in_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    run_dir, _ = echo_run(tmp_path)
    stored = files_under(run_dir) + (run_dir / "checkpoints.sqlite").read_bytes()
    # KEY is in no variable now and has no known shape: it is plain text here; SHAPED is the secret
    return stored.replace(KEY.encode(), b"")


def s_resumed_run_checkpoint_and_evidence(tmp_path, capsys):
    """A run interrupted by the generator, then resumed: the resumed evidence holds no secret."""
    from mllm_guidance import resume

    model = echoing_model()
    with pytest.raises(BackendError):
        guide(PROMPT, mllm=model, generator=CountingGenerator(fail_on=1), run_dir=tmp_path / "r")
    result = resume(tmp_path / "r", mllm=model, generator=CountingGenerator())
    return files_under(tmp_path / "r") + result.model_dump_json().encode()


SCENARIOS: dict[str, Callable[..., str | bytes]] = {
    name.removeprefix("s_"): fn for name, fn in globals().items() if name.startswith("s_") and callable(fn)
}


def test_there_are_at_least_21_scenarios():
    assert len(SCENARIOS) >= 21


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_no_sink_holds_a_planted_secret(scenario, tmp_path, capsys, monkeypatch):
    fn = SCENARIOS[scenario]
    kwargs = {"monkeypatch": monkeypatch} if "monkeypatch" in fn.__code__.co_varnames[: fn.__code__.co_argcount] else {}
    assert leaked(fn(tmp_path, capsys, **kwargs)) == []


def test_a_masked_server_url_must_be_given_again_to_resume(tmp_path, capsys):
    """The password was never stored, so resume asks for the URL instead of failing at the server."""
    from mllm_guidance.backends import registry

    failing = CountingGenerator(fail_on=1)
    registry._cache.clear()
    with StubServer(echo_stub) as stub:
        url = url_with_secrets(stub)
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(registry.BUILTIN, "flaky", "tests.run.test_secrets:FLAKY")
            globals()["FLAKY"] = lambda: failing
            code, _, err = cli(["generate", "a cat on a sofa", "--mllm", "openai:gpt-4o", "--mllm-base-url", url,
                                "--generator", "flaky", "--out", str(tmp_path / "r")], capsys)
            assert code == 3 and "simulated crash" in err
            failing.fail_on = None
            code, _, err = cli(["generate", "--resume", str(tmp_path / "r")], capsys)
            assert code == 2 and "give it again" in err and "--mllm-base-url" in err and not leaked(err)
            code, out, err = cli(["generate", "--resume", str(tmp_path / "r"), "--mllm-base-url", url], capsys)
            assert code == 0 and "best: round" in out and not leaked(out + err)
    registry._cache.clear()


def test_url_credentials_never_reach_a_log_handler(monkeypatch):
    """Issue 20, item 8: httpx logs each request's URL at INFO; a handler on the root logger (as
    `langgraph dev` and the MCP server's stderr have) gets it masked."""
    import logging

    import httpx

    import mllm_guidance  # noqa: F401  (installs the filter)
    from tests.stubs import StubServer

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(self.format(record))

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    loggers = [root, *(logging.getLogger(name) for name in ("httpx", "httpx2"))]
    before = [(logger.level, logger.disabled, logger.propagate) for logger in loggers]
    monkeypatch.setattr(logging.root.manager, "disable", 0)
    # other tests (and libraries: gradio, a server's logging config) may have quietened them; setLevel,
    # not the attribute, so the loggers' cached isEnabledFor answers are dropped too
    for logger in loggers:
        logger.setLevel(logging.DEBUG if logger is root else logging.INFO)
        logger.disabled, logger.propagate = False, True
    root.addHandler(handler)
    try:
        with StubServer(lambda path, body: (200, {"ok": True})) as stub:
            url = stub.url.replace("http://", "http://alice:hunter2-pass-0042@") + "/v1/models?key=AIza-not-shown-0000"
            httpx.get(url)
    finally:
        root.removeHandler(handler)
        for logger, (level, disabled, propagate) in zip(loggers, before, strict=True):
            logger.setLevel(level)
            logger.disabled, logger.propagate = disabled, propagate
    text = "\n".join(seen)
    assert "HTTP Request:" in text, text
    assert "hunter2-pass-0042" not in text and "AIza-not-shown" not in text and "alice" not in text, text


def test_every_http_logger_of_the_installed_clients_masks():
    """Every httpx / httpcore / openai logger the installed clients make (httpx2 and httpcore2 too,
    which recent OpenAI clients use) masks a URL's credentials before any handler sees it."""
    import importlib
    import logging
    import pkgutil

    from mllm_guidance.httplogs import HTTP_PREFIXES

    for package in ("httpx", "httpx2", "httpcore", "httpcore2", "openai"):
        try:
            module = importlib.import_module(package)
        except ImportError:
            continue
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            if info.name.startswith(("openai.types", "openai.resources", "openai.cli", "openai.lib._realtime")):
                continue
            try:
                importlib.import_module(info.name)
            except Exception:  # noqa: BLE001 - optional parts (trio, socksio, numpy...) are not ours to test
                continue
    names = [n for n, lg in logging.root.manager.loggerDict.items()
             if n.startswith(HTTP_PREFIXES) and isinstance(lg, logging.Logger)]
    assert {"httpx", "httpx2", "httpcore2.http11", "openai._base_client"} <= set(names), names
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(self.format(record))

    handler = Keep(level=logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        for name in names:
            logging.getLogger(name).warning("HTTP Request: %s %s", "POST", "http://u:pw-secret-77@host/v1")
    finally:
        logging.getLogger().removeHandler(handler)
    assert len(seen) == len(names) and not [s for s in seen if "pw-secret-77" in s], seen[:3]


def test_the_masking_record_factory_keeps_makelogrecord_working():
    """structlog (langgraph dev's logging) copies records with makeLogRecord, whose name starts as None."""
    import logging

    import mllm_guidance  # noqa: F401

    assert logging.makeLogRecord({}).name is None
    assert logging.makeLogRecord({"name": "httpx", "msg": "ok"}).getMessage() == "ok"
