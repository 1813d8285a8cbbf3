"""benchmarks/repair_search.py's fast path: tiny GLIGEN and CLIP, a scripted three-round loop."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

ROOT = Path(__file__).resolve().parents[2]


def test_the_fast_path_counts_renders_calls_and_repairs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("repair_search", ROOT / "benchmarks" / "repair_search.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = {r["configuration"]: r for r in module.main(["--fast", "--datasets", "spatial", "--limit", "1", "--out", str(tmp_path)])}
    assert set(rows) == {"full", "+repair", "+search", "both"} and all(r["images"] == 1 and r["failed"] == 0 for r in rows.values())
    # three rounds each; search renders four candidates a round; neither adds an MLLM call
    assert [rows[c]["renders/img"] for c in ("full", "+repair", "+search", "both")] == [3, 3, 12, 12]
    assert {r["MLLM calls/img"] for r in rows.values()} == {7}  # place, self-correct, 3 x reason, 2 x align
    assert [rows[c]["repaired rounds/img"] for c in ("full", "+repair", "+search", "both")] == [0, 2, 0, 2]
    assert (tmp_path / "repair_search.json").exists() and "| +repair | spatial | 1 |" in capsys.readouterr().out
