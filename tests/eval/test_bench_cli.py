"""mllm-guidance bench as a user runs it: a dataset, an OpenAI-compatible stub, scoring, tables."""

import json

from mllm_guidance.cli import main
from mllm_guidance.eval.datasets import load_dataset
from mllm_guidance.eval.judge import judge_prompts
from tests.stubs import PLANNER_ANSWERS, StubServer, openai_completion, step_in

JUDGE_OPENINGS = ("You are my assistant to evaluate the correspondence", "You are my assistant to identify")


def is_judge(body):
    return any(opening in json.dumps(body) for opening in JUDGE_OPENINGS)


def stub_answers(path, body):
    """The guide's steps by their instructions; the T2I-CompBench judge with its JSON answer."""
    if is_judge(body):
        return 200, openai_completion('{"score": 4, "explanation": "the bird is not clearly in the tree"}', 200, 20)
    return 200, openai_completion(PLANNER_ANSWERS[step_in(body)], prompt_tokens=50, completion_tokens=5)


def test_bench_rls300_with_the_mllm_scorer_sends_t2i_compbenchs_complex_prompt(tmp_path, capsys):
    out = tmp_path / "rls"
    with StubServer(stub_answers) as stub:
        url = stub.url + "/v1"
        args = ["bench", "--dataset", "rls300", "--limit", "2", "--method", "full", "--mllm", "openai:gpt-4o", "--mllm-base-url", url,
                "--generator", "sketch", "--scorer", "mllm", "--judge", "openai:gpt-4o-mini", "--judge-base-url", url,
                "--judge-scale", "(s-1)/4", "--quiet", "--out", str(out)]
        assert main(args) == 0
        printed = capsys.readouterr().out
        judged = [body for _, _, body in stub.requests if is_judge(body)]
    prompts = [p.text for p in load_dataset("rls300")[1][:2]]
    assert len(judged) == 2  # one turn per image, as gpt4v_eval.py asks
    for body in judged:
        assert body["model"] == "gpt-4o-mini" and body["temperature"] == 0 and len(body["messages"]) == 1
        image, text = body["messages"][0]["content"]
        assert image["type"] == "image_url" and image["image_url"]["url"].startswith("data:image/png;base64,")
        assert text["text"] in {judge_prompts("gpt4v", "complex").score_text(p) for p in prompts}
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["metrics"] for r in records] == [{"mllm": 0.75, "mllm_raw": 4.0}] * 2
    scoring = records[0]["scoring"]["mllm"]
    assert scoring["category"] == "complex" and scoring["scores"] == [4] and scoring["settings"]["model"] == "openai:gpt-4o-mini"
    assert records[0]["category"] == "complex" and scoring["scale"] == "(s-1)/4"
    header = printed.split("\n\n")[0]
    for text in ("generator: sketch", "guide MLLM: openai:gpt-4o", "judge: openai:gpt-4o-mini · gpt4v · complex · T=0.0 · x1",
                 "judge scale: (s-1)/4", "template set: builtin-v1+"):
        assert text in header
    assert "MLLM judge: T2I-CompBench [(s-1)/4]" in printed and "warning" not in printed
    summary = (out / "summary.md").read_text()
    assert summary.startswith("- generator: sketch") and "judge scale: (s-1)/4" in summary
    assert "judge scale" in (out / "summary.csv").read_text().splitlines()[0]


def test_a_judge_that_is_the_guide_is_warned_about(tmp_path, capsys):
    with StubServer(stub_answers) as stub:
        url = stub.url + "/v1"
        assert main(["bench", "--dataset", "spatial", "--limit", "1", "--mllm", "openai:gpt-4o", "--mllm-base-url", url,
                     "--generator", "sketch", "--scorer", "mllm", "--judge-base-url", url, "--quiet", "--out", str(tmp_path / "s")]) == 0
        sent = [body for _, _, body in stub.requests if is_judge(body)]
    out = capsys.readouterr().out
    assert "warning: the mllm judge is the guide's own model (ChatOpenAI(gpt-4o))" in out
    assert sent[0]["messages"][0]["content"][1]["text"].startswith("You are my assistant to identify objects and their spatial layout")


def test_judge_temperature_none_leaves_the_providers_default(tmp_path, capsys):
    with StubServer(stub_answers) as stub:
        url = stub.url + "/v1"
        assert main(["bench", "--dataset", "complex", "--limit", "1", "--method", "plain", "--generator", "sketch", "--scorer", "mllm",
                     "--judge-base-url", url, "--judge-temperature", "none", "--quiet", "--out", str(tmp_path / "c")]) == 0
        sent = [body for _, _, body in stub.requests if is_judge(body)]
    assert len(sent) == 1 and "temperature" not in sent[0]
    assert "T=provider default" in capsys.readouterr().out


def test_a_judge_without_its_key_fails_before_any_image(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    data = tmp_path / "mini.txt"
    data.write_text("A red cat sits on a mat.\n")
    assert main(["bench", "--dataset", str(data), "--method", "plain", "--generator", "sketch", "--scorer", "mllm",
                 "--quiet", "--out", str(tmp_path / "p")]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err and not (tmp_path / "p" / "results.jsonl").exists()


def test_bench_run_compare_and_correlate(tmp_path, tiny_clip, capsys):
    data = tmp_path / "mini.txt"
    data.write_text("A red cat sits on a mat.\nTwo dogs play in a park.\nA bird is in a tree.\n")
    with StubServer(stub_answers) as stub:
        args = ["bench", "--dataset", str(data), "--method", "full", "--images-per-prompt", "2", "--mllm", "openai:gpt-4o",
                "--mllm-base-url", stub.url + "/v1", "--generator", "sketch", "--scorer", "clipscore", "--clip-model", tiny_clip,
                "--quiet", "--out", str(tmp_path / "a")]
        assert main(args) == 0
        first = capsys.readouterr().out
        assert main(args) == 0  # a rerun skips what is done
        requests = len(stub.requests)
    assert "| full | mini | 6 | 0 |" in first and "CLIP cosine: T2I-CompBench" in first and "judge: –" in first
    records = [json.loads(line) for line in (tmp_path / "a" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all("clipscore_cos" in r["metrics"] for r in records)
    assert all(r["category"] is None for r in records)  # a user's file: the judge would use complex
    assert requests == 6 * 3  # place, self-correct and reason per image, once
    assert main(["bench", "compare", str(tmp_path / "a")]) == 0
    assert "| run | generator | guide MLLM |" in capsys.readouterr().out
    (tmp_path / "h.csv").write_text("key,rating\n" + "".join(f"{r['key']},{i % 3 + 1}\n" for i, r in enumerate(records)))
    assert main(["bench", "correlate", "--human", str(tmp_path / "h.csv"), str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "kendall_tau" in out and "CLIP cosine: T2I-CompBench" in out
    assert main(["bench", "datasets"]) == 0 and "rls300" in capsys.readouterr().out
    assert main(["bench", "--dataset", "rls300"]) == 2


def test_ray_and_batch_flags_are_checked_before_anything_runs(tmp_path, capsys):
    data = tmp_path / "p.txt"
    data.write_text("a cat\n")
    base = ["bench", "--dataset", str(data), "--method", "plain", "--generator", "sketch", "--quiet"]
    assert main(base + ["--ray-workers", "2", "--out", str(tmp_path / "a")]) == 2
    assert "--ray-workers only apply with --ray or --ray-address" in capsys.readouterr().err
    assert main(base + ["--ray", "--ray-resources", "{sim_gpu: 1}", "--out", str(tmp_path / "b")]) == 2
    assert "--ray-resources: not JSON" in capsys.readouterr().err
    assert main(base + ["--ray", "--ray-resources", '{"sim_gpu": "lots"}', "--out", str(tmp_path / "c")]) == 2
    assert "--ray-resources:" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abc")  # refused before --out was made


def test_max_batch_renders_a_benchmark_in_batches_with_the_same_images(tmp_path, capsys):
    """--max-batch coalesces the renders of prompts in flight (tiny GLIGEN on the CPU); every image
    is the one a lone render with its seed makes, to float rounding."""
    import numpy as np
    import pytest
    from PIL import Image

    pytest.importorskip("diffusers")
    from tests.backends.tiny_diffusion import build_tiny_gligen

    model = build_tiny_gligen(tmp_path / "gligen")
    data = tmp_path / "p.txt"
    data.write_text("".join(f"a cat number {i}\n" for i in range(6)))
    outs = []
    for batch in ("1", "4"):
        out = tmp_path / f"b{batch}"
        assert main(["bench", "--dataset", str(data), "--method", "plain", "--generator", "gligen", "--model-path", str(model),
                     "--steps", "3", "--size", "64x64", "--quiet", "--max-batch", batch, "--concurrency", "6",
                     "--out", str(out)]) == 0
        outs.append(out)
    capsys.readouterr()
    names = sorted(p.name for p in (outs[0] / "images").iterdir())
    assert len(names) == 6
    for name in names:
        lone, batched = (np.asarray(Image.open(o / "images" / name), dtype=np.int16) for o in outs)
        assert np.abs(lone - batched).max() <= 2


class _Broken:
    """A generator whose every render fails (a GPU that went away)."""

    fail = True

    def __init__(self) -> None:
        from tests.fakes import CountingGenerator

        self.inner = CountingGenerator()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, request):
        if _Broken.fail:
            raise RuntimeError("CUDA error: device lost")
        return self.inner.generate(request)


def test_bench_exit_status_says_whether_every_item_is_ok(tmp_path, capsys, monkeypatch):
    """Scripts can tell: 3 when any item failed (the rest still written), 0 once a rerun makes all ok."""
    from mllm_guidance.backends import registry

    broken = _Broken()
    monkeypatch.setitem(registry.BUILTIN, "broken", "tests.eval.test_bench_cli:BROKEN")
    monkeypatch.setitem(globals(), "BROKEN", lambda: broken)
    registry._cache.clear()
    data = tmp_path / "mini.txt"
    data.write_text("A red cat sits on a mat.\nTwo dogs play in a park.\n")
    args = ["bench", "--dataset", str(data), "--method", "plain", "--generator", "broken", "--quiet", "--out", str(tmp_path / "b")]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "2 of 2 item(s) failed" in err and "Traceback" not in err
    records = [json.loads(line) for line in (tmp_path / "b" / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["failed", "failed"]
    _Broken.fail = False  # the machine is fixed: the same command retries the failed items
    try:
        assert main(args) == 0
    finally:
        _Broken.fail = True
        registry._cache.clear()


def test_bench_with_a_token_budget_says_what_binds_and_the_judge_shares_it(tmp_path, capsys, monkeypatch):
    from mllm_guidance.backends import rate_limit

    budgets = []
    original = rate_limit.MllmBudget.__init__

    def remember(self, *args, **kwargs):
        original(self, *args, **kwargs)
        budgets.append(self)

    monkeypatch.setattr(rate_limit.MllmBudget, "__init__", remember)
    with StubServer(stub_answers) as stub:
        url = stub.url + "/v1"
        assert main(["bench", "--dataset", "spatial", "--limit", "2", "--mllm", "openai:gpt-4o", "--mllm-base-url", url,
                     "--mllm-tpm", "200000", "--mllm-rpm", "600", "--generator", "sketch", "--scorer", "mllm",
                     "--judge", "openai:gpt-4o-mini", "--judge-base-url", url, "--out", str(tmp_path / "b")]) == 0
        sent = len(stub.requests)
    err = capsys.readouterr().err
    assert "MLLM tokens/min: " in err and "% of budget; requests/min: " in err and "generator: " in err
    assert "bound by" in err and "ETA" in err
    [budget] = budgets  # one key, one server: the guide and the judge share one budget
    assert budget.calls == sent and budget.tpm == 200000 and budget.rpm == 600
