import math

import pytest

from mllm_guidance.eval.tables import correlate, kendall_tau, markdown, spearman_rho, summarize


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


def test_correlate_joins_ratings_by_key_or_image(tmp_path):
    records = [{"key": f"k{i}", "image": f"images/k{i}.png", "status": "ok", "final_score": s, "metrics": {"mllm": m, "clipscore": c}}
               for i, (s, m, c) in enumerate([(5, 1.0, 0.7), (3, 0.6, 0.8), (4, 0.8, 0.6), (1, 0.2, 0.5)])]
    (tmp_path / "h.csv").write_text("image,rating\nk0.png,5\nk1.png,3\nk2.png,4\nk3.png,2\n")
    rows = {r["metric"]: r for r in correlate(records, tmp_path / "h.csv")}
    assert rows["MLLM judge (mean score/5)"]["kendall_tau"] == pytest.approx(1.0)
    assert rows["guide score"]["spearman_rho"] == pytest.approx(1.0) and rows["guide score"]["n"] == 4
    assert rows["CLIPScore (2.5·max(cos,0), Hessel et al.)"]["kendall_tau"] == pytest.approx(kendall_tau([0.7, 0.8, 0.6, 0.5], [5, 3, 4, 2]))
    (tmp_path / "bad.csv").write_text("who,score\n")
    with pytest.raises(Exception, match="rating"):
        correlate(records, tmp_path / "bad.csv")


def test_summary_means_and_markdown():
    recs = [{"status": "ok", "method": "full", "dataset": "d", "final_score": 5, "metrics": {"mllm": 1.0}, "mllm_calls": 3,
             "input_tokens": 10, "output_tokens": 5, "generator_seconds": 2.0, "rounds_used": 1},
            {"status": "ok", "method": "full", "dataset": "d", "final_score": 3, "metrics": {"mllm": 0.6}, "mllm_calls": 5,
             "input_tokens": 20, "output_tokens": 5, "generator_seconds": 4.0, "rounds_used": 3},
            {"status": "failed", "method": "full", "dataset": "d"}]
    row = summarize(recs)
    assert row["images"] == 2 and row["failed"] == 1 and row["guide score (mean score/5)"] == 0.8
    assert row["MLLM judge (mean score/5)"] == 0.8 and row["tokens/img"] == 20 and row["generator s/img"] == 3
    assert markdown([row]).splitlines()[0].startswith("| method | dataset | images | failed |")
