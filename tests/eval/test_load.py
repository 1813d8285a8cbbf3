"""What binds a benchmark, and the ETA from it, on a clock the test moves."""

import pytest

from mllm_guidance.eval.load import LoadMeter, duration


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def item(tokens=2000, calls=2, render=1.0):
    return {"status": "ok", "input_tokens": tokens - 100, "output_tokens": 100, "mllm_calls": calls,
            "generator_seconds": render}


def test_token_budget_binds_and_sets_the_eta():
    clock = Clock()
    meter = LoadMeter(100, devices=2, tpm=30000, clock=clock)
    for _ in range(14):
        meter.add(item())
    clock.now = 60.0  # 28K tokens in a minute of a 30K budget
    f = meter.figures()
    assert f["shares"]["MLLM tokens/min"] == pytest.approx(28000 / 30000)
    assert f["generator_busy"] == pytest.approx(14 / 120)
    assert f["bound"] == "MLLM tokens/min"
    assert f["eta"] == pytest.approx(86 * 2000 / (30000 * 0.95 / 60))
    line = meter.line()
    assert line.startswith("MLLM tokens/min: 93% of budget; requests/min: 28; generator: 12% busy; bound by MLLM tokens/min")


def test_generator_binds_without_budgets():
    clock = Clock()
    meter = LoadMeter(10, clock=clock)
    for _ in range(5):
        meter.add(item(render=1.9))
    clock.now = 10.0
    f = meter.figures()
    assert f["bound"] == "generator" and f["eta"] == pytest.approx(5 * 1.9)
    assert "generator: 95% busy; bound by generator; ETA 10s" in meter.line()


def test_nothing_near_its_limit_uses_the_pace_seen():
    clock = Clock()
    meter = LoadMeter(10, rpm=1000, clock=clock)
    assert meter.figures()["eta"] is None
    meter.add(item(render=0.1))
    clock.now = 30.0
    f = meter.figures()
    assert f["bound"] is None and f["eta"] == pytest.approx(9 * 30)
    assert "bound by latency" in meter.line() and "requests/min: 0% of budget" in meter.line()


def test_duration():
    assert [duration(s) for s in (5, 65, 3725)] == ["5s", "1m 05s", "1h 02m"]
