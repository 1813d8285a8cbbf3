"""mllm-guidance bench as a user runs it: a dataset file, an OpenAI-compatible stub, CLIP scoring."""

import json

from mllm_guidance.cli import main
from tests.eval.test_scorers import tiny_clip  # noqa: F401  (fixture)
from tests.stubs import PLANNER_ANSWERS, StubServer, openai_completion, step_in


def planner(path, body):
    return 200, openai_completion(PLANNER_ANSWERS[step_in(body)], prompt_tokens=50, completion_tokens=5)


def test_bench_run_compare_and_correlate(tmp_path, tiny_clip, capsys):  # noqa: F811
    data = tmp_path / "mini.txt"
    data.write_text("A red cat sits on a mat.\nTwo dogs play in a park.\nA bird is in a tree.\n")
    with StubServer(planner) as stub:
        args = ["bench", "--dataset", str(data), "--method", "full", "--images-per-prompt", "2", "--mllm", "openai:gpt-4o",
                "--mllm-base-url", stub.url + "/v1", "--generator", "sketch", "--scorer", "clipscore", "--clip-model", tiny_clip,
                "--quiet", "--out", str(tmp_path / "a")]
        assert main(args) == 0
        first = capsys.readouterr().out
        assert main(args) == 0  # a rerun skips what is done
        requests = len(stub.requests)
    assert "| full | mini | 6 | 0 |" in first and "CLIPScore (raw cosine)" in first
    records = [json.loads(line) for line in (tmp_path / "a" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all("clipscore_cos" in r["metrics"] for r in records)
    assert requests == 6 * 3  # place, self-correct and reason per image, once
    assert main(["bench", "compare", str(tmp_path / "a")]) == 0
    assert "| run | method |" in capsys.readouterr().out
    (tmp_path / "h.csv").write_text("key,rating\n" + "".join(f"{r['key']},{i % 3 + 1}\n" for i, r in enumerate(records)))
    assert main(["bench", "correlate", "--human", str(tmp_path / "h.csv"), str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "kendall_tau" in out and "CLIPScore (raw cosine)" in out
    assert main(["bench", "datasets"]) == 0 and "rls300" in capsys.readouterr().out
    assert main(["bench", "--dataset", "rls300"]) == 2
