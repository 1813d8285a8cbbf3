"""DPG-Bench (issue 23): the reference's question reading, dependency rule and table, the question
file downloaded once, and ``bench --suite dpg-bench`` end to end on a tiny BLIP."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler

import pytest
from PIL import Image

from mllm_guidance.cli import main
from mllm_guidance.errors import BackendError
from mllm_guidance.eval.datasets import load_dataset
from mllm_guidance.eval.dpg_bench import dpg_table, load_questions, read_questions, score_answers
from mllm_guidance.eval.suites import resolve_suite
from tests.eval.test_bench_cli import stub_answers
from tests.stubs import LocalServer, StubServer

HEADER = "item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple,question_natural_language\n"
ROWS = [
    ("0", 1, "0", "entity - whole (cabbage)", "Are there cabbages?"),
    ("0", 2, "1", "other - count (cabbage, ==8)", "Are there eight cabbages?"),
    ("0", 3, "1", "attribute - color (cabbage, green)", "Are the cabbages green?"),
    ("1", 1, "0", "entity - whole (bird)", "Is there a bird?"),
    ("1", 2, "1", "relation - spatial (bird, tree, in)", "Is the bird in the tree?"),
    ("1", 3, "0", "global - (photograph)", "Is this a photograph?"),
]


def csv_text(rows=ROWS):
    return HEADER + "".join(f'{i},"prompt",,{q},"{d}",x,y,{t},{text}\n' for i, q, d, t, text in rows)


def test_questions_are_read_as_the_reference_reads_them():
    """Its loop skips i == 0 after pandas took the header: the first question is never asked."""
    kept = read_questions(csv_text())
    assert sorted(kept.by_item["0"]) == [2, 3] and sorted(kept.by_item["1"]) == [1, 2, 3]
    everything = read_questions(csv_text(), skip_first_row=False)
    assert sorted(everything.by_item["0"]) == [1, 2, 3]
    assert everything.by_item["1"][2].parents == (1,) and everything.by_item["1"][2].category == "relation - spatial"
    with pytest.raises(Exception, match="not DPG-Bench's dpg_bench.csv"):
        read_questions("a,b\n1,2\n")


def test_a_no_to_a_parent_zeroes_its_children_but_not_their_raw_answers():
    questions = read_questions(csv_text(), skip_first_row=False).by_item["0"]
    score, raw = score_answers(questions, {1: "no", 2: "yes", 3: "yes"})
    assert score == 0.0 and raw == {1: 0.0, 2: 1.0, 3: 1.0}
    score, _ = score_answers(questions, {1: "yes", 2: "no", 3: "yes"})
    assert score == pytest.approx(2 / 3)
    assert score_answers(questions, {1: "Yes", 2: "yes", 3: "yes"})[0] == 0.0  # exactly 'yes', as the reference


def test_the_question_file_is_downloaded_once_then_read_from_the_cache(tmp_path):
    served = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            served.append(self.path)
            data = csv_text().encode()
            self.send_response(200)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = LocalServer()
    server.serve(Handler)
    with server:
        url = server.url + "/TencentQQGYLab/ELLA/dpg_bench.csv"
        first = load_questions(url, cache_dir=tmp_path)
    again = load_questions(url, skip_first_row=False, cache_dir=tmp_path)  # the server is gone: the cache answers
    assert served == ["/TencentQQGYLab/ELLA/dpg_bench.csv"]
    assert sorted(first.by_item["0"]) == [2, 3] and sorted(again.by_item["0"]) == [1, 2, 3]
    with pytest.raises(BackendError, match="--dpg-questions PATH"):
        load_questions("http://127.0.0.1:9/dpg_bench.csv", cache_dir=tmp_path / "empty")


def test_the_table_is_the_scripts_score_and_l1_categories_from_each_prompts_last_image():
    def record(prompt_id, index, score, raw):
        cats = {"1": "entity - whole", "2": "relation - spatial"}
        return {"status": "ok", "prompt_id": prompt_id, "image_index": index, "metrics": {"dpg": score},
                "scoring": {"dpg-bench": {"raw": raw, "categories": cats, "settings": {"vqa_model": "m"}}}}

    records = [record("a", 0, 1.0, {"1": 1.0, "2": 1.0}), record("a", 1, 0.5, {"1": 1.0, "2": 0.0}),
               record("b", 0, 0.0, {"1": 0.0, "2": 1.0})]
    row = dpg_table(records)
    assert row["Overall"] == 50.0 and row["Entity"] == 50.0 and row["Relation"] == 50.0
    assert row["Global"] is None and row["vqa"] == "m" and row["images"] == 3


def test_the_suite_and_the_reference_vqa_fail_before_any_image(tmp_path, capsys):
    assert resolve_suite("dpg-bench", None, None, []) == ("dpg-bench", 4, ["dpg-bench"])
    name, prompts = load_dataset("dpg-bench")
    assert len(prompts) == 1065 and prompts[0].id == "0" and prompts[-1].id == "whoops39"
    questions = tmp_path / "dpg_bench.csv"
    questions.write_text(csv_text())
    pytest.importorskip("transformers")
    try:
        import modelscope  # noqa: F401
        pytest.skip("modelscope is installed here: the missing-package path cannot be shown")
    except ImportError:
        pass
    code = main(["bench", "--suite", "dpg-bench", "--limit", "1", "--generator", "sketch", "--mllm", "openai:gpt-4o",
                 "--mllm-base-url", "http://127.0.0.1:9/v1", "--dpg-questions", str(questions), "--out", str(tmp_path / "o")])
    assert code == 2 and "pip install modelscope" in capsys.readouterr().err
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_bench_suite_dpg_bench_end_to_end_on_a_tiny_blip(tmp_path, tiny_blip, capsys):
    questions = tmp_path / "dpg_bench.csv"
    questions.write_text(csv_text())
    out = tmp_path / "d"
    with StubServer(stub_answers) as stub:
        assert main(["bench", "--suite", "dpg-bench", "--limit", "2", "--images-per-prompt", "2", "--generator", "sketch",
                     "--mllm", "openai:gpt-4o", "--mllm-base-url", stub.url + "/v1", "--dpg-questions", str(questions),
                     "--dpg-vqa", f"blip:{tiny_blip['vqa']}", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 and {r["prompt_id"] for r in records} == {"0", "1"}
    for r in records:
        details = r["scoring"]["dpg-bench"]
        asked = {"0": ["2", "3"], "1": ["1", "2", "3"]}[r["prompt_id"]]
        assert sorted(details["answers"]) == asked and 0.0 <= r["metrics"]["dpg"] <= 1.0
        assert details["settings"]["leaderboard_vqa"] is False and details["settings"]["skip_first_row"] is True
    assert "DPG-Bench (TencentQQGYLab/ELLA; questions answered by" in printed
    assert "| Method | Overall | Global | Entity | Attribute | Relation | Other |" in printed


def test_a_prompt_outside_dpg_bench_is_not_applicable(tmp_path, tiny_blip):
    from mllm_guidance.eval.dpg_bench import DpgBenchScorer
    from mllm_guidance.eval.scorers import ScoreItem

    questions = tmp_path / "dpg_bench.csv"
    questions.write_text(csv_text())
    scorer = DpgBenchScorer(str(questions), vqa=f"blip:{tiny_blip['vqa']}")
    first = load_dataset("dpg-bench")[1][1].text
    [(inside, _), (outside, why)] = scorer.score_items([ScoreItem(first, Image.new("RGB", (32, 32))),
                                                         ScoreItem("a cat", Image.new("RGB", (32, 32)))])
    assert "dpg" in inside and outside == {} and "not a DPG-Bench prompt" in why["not_applicable"]
