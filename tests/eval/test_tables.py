import math
import re

import pytest

from mllm_guidance.eval.tables import (compare, correlate, kendall_tau, markdown, spearman_rho, summarize, summary_markdown,
                                       to_csv, write_summary)

#: The thesis's Table 6.3 (MLLM-judge scores; FLUX.1, SD 3.5-L, SD 3.5-M, SDXL, RPG, LMD+, MLLM Guidance
#: by spatial, 3d-spatial, non-spatial, complex, RLS-300), as printed (docs/method.md).
TABLE_6_3 = [0.6925, 0.6058, 0.9108, 0.8625, 0.8525, 0.8108, 0.6667, 0.9375, 0.8692, 0.8275, 0.7267, 0.6350, 0.9067,
             0.8675, 0.8083, 0.6908, 0.5600, 0.9208, 0.7633, 0.6892, 0.6750, 0.5333, 0.8667, 0.7500, 0.6792, 0.7708,
             0.5900, 0.8092, 0.6725, 0.6750, 0.8392, 0.7258, 0.9217, 0.8725, 0.8517]


def on_grid(value: float, n: int) -> bool:
    """Whether some k/n prints as ``value`` with four decimals."""
    return abs(round(value * n) / n - value) < 0.00005


def test_the_grid_analysis_of_table_6_3():
    assert len(TABLE_6_3) == 35
    assert all(on_grid(v, 1200) for v in TABLE_6_3)  # (s-1)/4 over 300 images lands here
    fits_s5 = [v for v in TABLE_6_3 if on_grid(v, 1500)]  # s/5 over 300 images would land here
    assert len(fits_s5) == 9 and fits_s5 == [v for v in TABLE_6_3 if on_grid(v, 300)]


def test_kendall_and_spearman_against_hand_computed_values():
    # 6 pairs, 5 concordant and 1 discordant: tau = (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # squared rank differences sum to 2: rho = 1 - 6 * 2 / (4 * 15)
    assert spearman_rho([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # ties: C = 4, D = 0, one tie in x, one in y: tau-b = 4 / sqrt(5 * 5)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    # average ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3.5, 3.5]; deviations from 2.5 give
    # covariance 2.25 + 1.5 = 3.75 and both sums of squares 4.5: rho = 3.75 / 4.5
    assert spearman_rho([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(3.75 / 4.5)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1) and spearman_rho([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    assert math.isnan(spearman_rho([1, 1, 1], [1, 2, 3]))


def judged(scale="s/5", judge_class="ChatOpenAI(gpt-4o)", guide="ChatOpenAI(gpt-4o)"):
    settings = {"reference": "T2I-CompBench ...", "protocol": "gpt4v", "prompt_version": "t2i-compbench@ac7b5aa+x",
                "category_override": None, "model": "openai:gpt-4o", "model_class": judge_class, "temperature": 0.0, "repeats": 1}
    base = {"status": "ok", "method": "full", "dataset": "rls300", "template_set": "builtin-v1+abc",
            "models": {"mllm": guide, "generator": "gligen-xl"}, "mllm_calls": 3, "input_tokens": 10, "output_tokens": 5,
            "generator_seconds": 2.0, "rounds_used": 1}
    return [
        {**base, "final_score": 5, "metrics": {"mllm": 0.8, "mllm_raw": 4.0},
         "scoring": {"mllm": {"settings": settings, "category": "complex", "scores": [4], "scale": scale}}},
        {**base, "final_score": 3, "metrics": {"mllm": 0.6, "mllm_raw": 3.0},
         "scoring": {"mllm": {"settings": settings, "category": "complex", "scores": [3], "scale": scale}}},
        {**base, "final_score": 3, "metrics": {},
         "scoring": {"mllm": {"settings": settings, "category": "complex", "scores": [None], "scale": scale}}},
        {"status": "failed", "method": "full", "dataset": "rls300"},
    ]


def test_summary_names_generator_guide_judge_scale_and_templates_and_warns_on_a_self_judge():
    row = summarize(judged())
    assert (row["generator"], row["guide MLLM"], row["judge scale"], row["template set"]) == (
        "gligen-xl", "ChatOpenAI(gpt-4o)", "s/5", "builtin-v1+abc")
    assert row["judge"] == "openai:gpt-4o · gpt4v · complex · T=0.0 · x1 · t2i-compbench@ac7b5aa+x"
    assert row["images"] == 3 and row["failed"] == 1 and row["judge unscored"] == 1
    assert row["MLLM judge: T2I-CompBench [s/5]"] == 0.7 and row["guide score (mean score/5)"] == pytest.approx(0.7333, abs=1e-4)
    assert "the mllm judge is the guide's own model" in row["warnings"]
    md = summary_markdown(row)
    header = md.split("\n\n")[0]
    for text in ("generator: gligen-xl", "guide MLLM: ChatOpenAI(gpt-4o)", "judge: openai:gpt-4o", "judge scale: s/5",
                 "template set: builtin-v1+abc"):
        assert text in header
    assert "| method | dataset | images | failed | judge unscored |" in md and md.rstrip().endswith("(--judge).")
    csv_header = to_csv([row]).splitlines()[0]
    assert all(c in csv_header for c in ("generator", "guide MLLM", "judge", "judge scale", "template set"))
    assert "comparable" not in md.lower() and "6.3" not in md
    other = summarize(judged(scale="(s-1)/4", judge_class="ChatGoogleGenerativeAI(gemini-2.5-flash)"))
    assert "MLLM judge: T2I-CompBench [(s-1)/4]" in other and other["warnings"] is None


def test_compare_puts_runs_side_by_side_with_their_headers(tmp_path):
    for name, scale in (("a", "s/5"), ("b", "pass@5")):
        (tmp_path / name).mkdir()
        write_summary(tmp_path / name, judged(scale=scale))
    table = markdown(compare([tmp_path / "a", tmp_path / "b"]))
    head = table.splitlines()[0]
    assert re.match(r"\| run \| generator \| guide MLLM \| judge \| judge scale \| template set \|", head)
    assert "MLLM judge: T2I-CompBench [s/5]" in head and "MLLM judge: T2I-CompBench [pass@5]" in head
    with pytest.raises(Exception, match="no summary.json"):
        compare([tmp_path / "missing"])


def test_correlate_joins_ratings_by_key_or_image(tmp_path):
    records = [{"key": f"k{i}", "image": f"images/k{i}.png", "status": "ok", "final_score": s, "metrics": {"mllm": m, "clipscore": c}}
               for i, (s, m, c) in enumerate([(5, 1.0, 0.7), (3, 0.6, 0.8), (4, 0.8, 0.6), (1, 0.2, 0.5)])]
    (tmp_path / "h.csv").write_text("image,rating\nk0.png,5\nk1.png,3\nk2.png,4\nk3.png,2\n")
    rows = {r["metric"]: r for r in correlate(records, tmp_path / "h.csv")}
    assert rows["MLLM judge: T2I-CompBench [s/5]"]["kendall_tau"] == pytest.approx(1.0)
    assert rows["guide score"]["spearman_rho"] == pytest.approx(1.0) and rows["guide score"]["n"] == 4
    assert rows["CLIPScore: Hessel et al. (2.5·max(cos,0))"]["kendall_tau"] == pytest.approx(kendall_tau([0.7, 0.8, 0.6, 0.5], [5, 3, 4, 2]))
    (tmp_path / "bad.csv").write_text("who,score\n")
    with pytest.raises(Exception, match="rating"):
        correlate(records, tmp_path / "bad.csv")


def test_summary_means_and_cost_columns():
    recs = [{"status": "ok", "method": "full", "dataset": "d", "final_score": 5, "metrics": {"clipscore": 1.0}, "mllm_calls": 3,
             "input_tokens": 10, "output_tokens": 5, "generator_seconds": 2.0, "rounds_used": 1},
            {"status": "ok", "method": "full", "dataset": "d", "final_score": 3, "metrics": {"clipscore": 0.6}, "mllm_calls": 5,
             "input_tokens": 20, "output_tokens": 5, "generator_seconds": 4.0, "rounds_used": 3},
            {"status": "failed", "method": "full", "dataset": "d"}]
    row = summarize(recs)
    assert row["images"] == 2 and row["failed"] == 1 and row["guide score (mean score/5)"] == 0.8 and "judge unscored" not in row
    assert row["CLIPScore: Hessel et al. (2.5·max(cos,0))"] == 0.8 and row["tokens/img"] == 20 and row["generator s/img"] == 3
    assert markdown([row]).splitlines()[0].startswith("| method | dataset | images | failed |")
