import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from mllm_guidance.eval.datasets import list_datasets, load_dataset
from mllm_guidance.eval.runner import RESULTS, BenchSpec, plan_items, read_results, run_bench
from mllm_guidance.eval.tables import summarize, write_summary
from tests.fakes import SlowGenerator, StepChatModel

HERE = Path(__file__).parent


def dataset(tmp_path, n=12, word=None):
    lines = [f"A cat number {i} sits next to a dog." for i in range(n)]
    if word:
        lines[3] = f"A {word} cat sits next to a dog."
    path = tmp_path / "mini.txt"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def spec(tmp_path, out, **kw):
    base = dict(out=tmp_path / out, mllm=StepChatModel(), generator=SlowGenerator(), config={"self_correct": False}, concurrency=4)
    if "dataset" not in kw:
        kw["dataset"] = dataset(tmp_path)
    return BenchSpec(**{**base, **kw})


def test_datasets_ship_with_counts_and_user_files(tmp_path):
    assert {name: n for name, n, _ in list_datasets()} == {"rls300": 300, "spatial": 300, "3d-spatial": 300, "non-spatial": 300, "complex": 300,
                                                               "geneval": 553, "genai-bench": 527, "dpg-bench": 1065}
    name, prompts = load_dataset("3d_spatial")
    assert name == "3d-spatial" and prompts[0].id == "3d-spatial-000"
    (tmp_path / "p.jsonl").write_text('{"prompt": "a cat", "id": "x1"}\n\n{"prompt": "a dog"}\n')
    (tmp_path / "p.csv").write_text("id,prompt\na,a red ball\nb,\n")
    assert [p.text for p in load_dataset(str(tmp_path / "p.jsonl"))[1]] == ["a cat", "a dog"]
    assert [(p.id, p.text) for p in load_dataset(str(tmp_path / "p.csv"))[1]] == [("a", "a red ball")]
    from mllm_guidance.errors import InputError
    import pytest

    with pytest.raises(InputError, match="unknown dataset"):
        load_dataset("coco")


def test_records_pin_what_produced_them_and_a_rerun_skips_done_items(tmp_path):
    s = spec(tmp_path, "run", images_per_prompt=2)
    records = asyncio.run(run_bench(s))
    assert len(records) == 24 and all(r["status"] == "ok" for r in records)
    r = records[0]
    assert (r["method"], r["dataset"], r["seed"] in (0, 1)) == ("full", "mini", True)
    assert r["template_set"].startswith("builtin-v1+") and r["package_version"] and r["models"]["generator"] == "slow-sketch"
    assert r["final_score"] == 5 and r["round_scores"] == [5] and r["mllm_calls"] == 2 and (tmp_path / "run" / r["image"]).exists()
    assert {x["seed"] for x in records if x["prompt_id"] == "mini-00"} == {0, 1}
    gen = SlowGenerator()
    asyncio.run(run_bench(spec(tmp_path, "run", images_per_prompt=2, generator=gen)))
    assert len((tmp_path / "run" / RESULTS).read_text().splitlines()) == 24  # nothing was redone


def test_a_failing_prompt_is_recorded_and_the_others_go_on(tmp_path):
    s = spec(tmp_path, "run", dataset=dataset(tmp_path, word="forbidden"), mllm=StepChatModel(fail_word="forbidden"))
    records = asyncio.run(run_bench(s))
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1 and "refuses prompts with 'forbidden'" in failed[0]["error"]
    assert sum(r["status"] == "ok" for r in records) == 11
    assert summarize(records)["failed"] == 1


def test_shards_union_to_the_full_run(tmp_path):
    full = {item.key for item in plan_items(spec(tmp_path, "full", images_per_prompt=2))[1]}
    keys = []
    for i in range(3):
        records = asyncio.run(run_bench(spec(tmp_path, f"shard{i}", images_per_prompt=2, shard=(i, 3))))
        keys += [r["key"] for r in records]
    assert sorted(keys) == sorted(full) and len(keys) == len(set(keys)) == 24


def test_resume_after_sigkill_ends_with_every_item_exactly_once(tmp_path):
    data, out = dataset(tmp_path), tmp_path / "killed"
    child = subprocess.Popen([sys.executable, str(HERE / "bench_child.py"), data, str(out)])
    deadline = time.time() + 60
    while time.time() < deadline:
        lines = (out / RESULTS).read_text().splitlines() if (out / RESULTS).exists() else []
        if len(lines) >= 4:
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = len(read_results(out / RESULTS))
    assert 4 <= before < 24, before  # killed mid-run
    asyncio.run(run_bench(BenchSpec(dataset=data, out=out, mllm=StepChatModel(), generator=SlowGenerator(),
                                    images_per_prompt=2, config={"self_correct": False})))
    ok_lines = [json.loads(l) for l in (out / RESULTS).read_text().splitlines() if '"status": "ok"' in l]
    keys = [r["key"] for r in ok_lines]
    assert len(keys) == len(set(keys)) == 24
    assert all((out / r["image"]).exists() for r in ok_lines)


def test_summary_files(tmp_path):
    records = asyncio.run(run_bench(spec(tmp_path, "run")))
    for r in records:
        r["metrics"] = {"mllm": 0.8, "clipscore_cos": 0.3, "clipscore": 0.75}
    row = write_summary(tmp_path / "run", records)
    assert row["MLLM judge: T2I-CompBench [s/5]"] == 0.8 and row["CLIPScore: Hessel et al. (2.5·max(cos,0))"] == 0.75
    assert row["MLLM calls/img"] == 2 and row["images"] == 12
    assert row["generator"] == "slow-sketch" and row["template set"].startswith("builtin-v1+")
    md = (tmp_path / "run" / "summary.md").read_text()
    assert md.startswith("- generator: slow-sketch\n- guide MLLM: StepChatModel")
    assert "| MLLM judge: T2I-CompBench [s/5] |" in md and json.loads((tmp_path / "run" / "summary.json").read_text()) == row


def test_summary_html_pictures_the_benchmark(tmp_path):
    records = asyncio.run(run_bench(spec(tmp_path, "run", dataset=dataset(tmp_path, 6, word="<b>bold</b>"))))
    for i, r in enumerate(records):
        r["metrics"] = {"mllm": 0.2 * (i % 5), "clipscore": 0.5}
        r["final_score"] = 1 + i % 5
    failed = next(r for r in records if "bold" not in r["prompt"])  # records come in finishing order: not always mini-0
    failed["status"], failed["error"] = "failed", "RuntimeError: <script>alert(1)</script>"
    write_summary(tmp_path / "run", records)
    page = (tmp_path / "run" / "summary.html").read_text()
    assert page.count('aria-label="metrics"') == 1 and "MLLM judge: T2I-CompBench [s/5]" in page
    assert 'aria-label="scores"' in page and 'aria-label="rounds"' in page and "generator seconds / image" in page
    lowest = page.split("Lowest-scored items")[1]
    assert lowest.count('<div class="item">') == 5 and 'src="images/' in lowest  # the failed item is not an image
    assert "<script>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page  # prompts and errors are escaped
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # offline


def test_summary_draws_every_metric_on_its_scale_and_sorts_by_the_judge(tmp_path):
    """A raw 1..5 judge and Hessel's CLIPScore above 1 stay on the chart; the lowest items are the
    judge's lowest, not the guide's; counts print as counts."""
    records = asyncio.run(run_bench(spec(tmp_path, "run", dataset=dataset(tmp_path, 4))))
    for i, r in enumerate(records):
        r["metrics"] = {"mllm": [5.0, 1.0, 4.0, 3.0][i], "clipscore": 1.2 + 0.1 * i}
        r["final_score"], r["input_tokens"], r["output_tokens"] = 5, 6000 + i, 960
        r["scoring"] = {"mllm": {"scale": "raw", "settings": {"model": "openai:gpt-4o-mini"}}}
    row = write_summary(tmp_path / "run", records)
    page = (tmp_path / "run" / "summary.html").read_text()
    bars = page.split('aria-label="metrics"')[1].split("</svg>")[0]
    assert "MLLM judge: T2I-CompBench [raw]" in bars and "CLIPScore" in bars
    assert ">5</text>" in bars and ">2.5</text>" in bars  # each on its own axis end
    lowest = page.split("Lowest-scored items")[1]
    assert "(by the judge)" in lowest and lowest.index("judge 1.00") < lowest.index("judge 3.00") < lowest.index("judge 4.00")
    assert "6,962" in page and "6961.50" not in page  # tokens per image, as a count
    assert row["scorers"].startswith("mllm (see judge)")
