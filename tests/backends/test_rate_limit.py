"""The rate-limit budget: token buckets, the adaptive limiter and the budget on a clock the test
moves by hand (no sleeps); then the budget on a real OpenAI client against a 429-answering stub."""

import asyncio
import math

import pytest
from langchain_core.messages import HumanMessage

from mllm_guidance.backends.mllm import resolve_mllm
from mllm_guidance.backends.rate_limit import (
    IMAGE_TOKENS,
    AdaptiveLimiter,
    MllmBudget,
    TokenBucket,
    retry_after,
    shared_budget,
)
from mllm_guidance.errors import BackendError
from tests.stubs import StubServer, openai_completion, openai_error


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_at_its_rate_up_to_its_capacity():
    bucket = TokenBucket(per_minute=600, capacity=50, now=0.0)  # 10 a second
    assert bucket.wait(50, 0.0) == 0
    bucket.take(50, 0.0)
    assert bucket.wait(20, 0.0) == pytest.approx(2.0)
    assert bucket.wait(20, 1.0) == pytest.approx(1.0)
    assert bucket.wait(20, 2.0) == 0
    assert bucket.wait(50, 100.0) == 0 and bucket.level == 50  # never more than the capacity


def test_bucket_debt_from_a_call_larger_than_estimated_delays_the_next():
    bucket = TokenBucket(per_minute=600, capacity=50, now=0.0)
    bucket.take(40, 0.0)
    bucket.settle(+30, 0.0)  # it used 70, not 40: 20 in debt
    assert bucket.level == pytest.approx(-20)
    assert bucket.wait(10, 0.0) == pytest.approx(3.0)
    bucket.settle(-100, 0.0)  # a call that used far less gives back, up to the capacity
    assert bucket.level == 50


def test_a_take_larger_than_the_capacity_waits_for_a_full_bucket_only():
    bucket = TokenBucket(per_minute=600, capacity=50, now=0.0)
    bucket.take(30, 0.0)
    assert bucket.wait(500, 0.0) == pytest.approx(3.0)  # the 30 taken come back, then it may go
    bucket.take(500, 3.0)
    assert bucket.level == pytest.approx(-450)


def test_limiter_halves_once_per_wave_and_recovers_one_per_round_trip():
    limiter = AdaptiveLimiter(ceiling=16)
    for _ in range(16):
        limiter.start()
    assert limiter.wait(0.0) == math.inf
    limiter.rate_limited(started=1.0, now=2.0, retry_after=None)
    assert limiter.limit == 8
    limiter.rate_limited(started=1.5, now=2.1, retry_after=None)  # same wave: started before the cut
    assert limiter.limit == 8
    limiter.rate_limited(started=2.0, now=2.2, retry_after=None)  # started after it: cut again
    assert limiter.limit == 4
    for _ in range(4):
        limiter.succeeded()
    assert 4.9 < limiter.limit < 5  # 4 + 1/4 + 1/4.25 + ...: about one more per round trip of 4 calls
    for _ in range(500):
        limiter.start()
        limiter.succeeded()
    assert limiter.limit == 16  # never above the ceiling


def test_limiter_floor_and_retry_after():
    limiter = AdaptiveLimiter(ceiling=2)
    limiter.start()
    limiter.rate_limited(started=0.0, now=1.0, retry_after=5.0)
    limiter.start()
    limiter.rate_limited(started=1.0, now=1.0, retry_after=None)
    assert limiter.limit == 1  # the floor
    limiter.failed()  # (a third call that failed otherwise: frees its slot, changes nothing else)
    assert limiter.wait(3.0) == pytest.approx(3.0)  # held until Retry-After has passed
    assert limiter.wait(6.0) == 0


def test_budget_paces_requests_and_tokens_on_its_clock():
    clock = Clock()
    budget = MllmBudget(rpm=60, tpm=6000, headroom=0.5, clock=clock)  # fills at 0.5/s and 50 tokens/s
    t1, _ = budget.try_start(100)
    assert t1 is not None
    ticket, wait = budget.try_start(100)  # requests: 30 saved, tokens: 3000 saved -> may go
    assert ticket is not None
    budget.finish(t1, tokens=100)
    budget.finish(ticket, tokens=2900)  # used far more than estimated: the token bucket is in debt
    blocked, wait = budget.try_start(100)
    assert blocked is None and wait == pytest.approx((100 - (3000 - 3000)) / 50)
    clock.now += wait
    assert budget.try_start(100)[0] is not None
    assert budget.calls == 2 and budget.used_tokens == 3000


def test_budget_limits_calls_in_flight_after_a_429_and_honours_retry_after():
    clock = Clock()
    budget = MllmBudget(tpm=10**9, ceiling=4, clock=clock)
    tickets = [budget.try_start(10)[0] for _ in range(4)]
    assert all(tickets) and budget.try_start(10) == (None, math.inf)
    budget.finish(tickets[0], rate_limited=True, retry_after=2.0)
    assert budget.limiter.limit == 2 and budget.rate_limited == 1
    assert budget.try_start(10) == (None, pytest.approx(2.0))
    clock.now += 2.0
    assert budget.try_start(10)[0] is None  # 3 still in flight, limit 2
    for t in tickets[1:]:
        budget.finish(t, tokens=10)
    assert budget.try_start(10)[0] is not None


def test_estimate_counts_text_images_and_learns_the_ratio():
    budget = MllmBudget(tpm=100000)
    message = HumanMessage(content=[{"type": "text", "text": "x" * 400},
                                    {"type": "image", "base64": "AAAA", "mime_type": "image/png"}])
    tokens, raw = budget.estimate([message])
    assert raw == 100 + IMAGE_TOKENS + 300 and tokens == raw
    ticket = budget.try_start(tokens, raw)[0]
    budget.finish(ticket, tokens=raw * 2)  # the provider counted twice as many
    assert budget.estimate([message])[0] == int(raw * 1.2)


def test_async_waiters_wake_when_a_call_ends():
    budget = MllmBudget(tpm=10**9, ceiling=1)

    async def main():
        first = await budget.acquire(10)
        waiter = asyncio.ensure_future(budget.acquire(10))
        await asyncio.sleep(0)
        assert not waiter.done()
        budget.finish(first, tokens=10)
        return await asyncio.wait_for(waiter, 5)

    assert asyncio.run(main()) is not None


def test_one_budget_per_key_shared_by_guide_and_judge():
    env = {"OPENAI_API_KEY": "sk-guide-0123456789"}
    guide = resolve_mllm("openai:gpt-4o", tpm=30000, environ=env)
    judge = resolve_mllm("openai:gpt-4.1", tpm=30000, timeout=30, environ=env)
    other = resolve_mllm("openai:gpt-4o", tpm=30000, environ={"OPENAI_API_KEY": "sk-other-0123456789"})
    assert guide.budget is judge.budget and guide.budget is not other.budget
    assert resolve_mllm("openai:gpt-4o", environ=env).budget is None  # no flags: no budget, today's behaviour
    with pytest.raises(BackendError, match="same --mllm-rpm"):
        resolve_mllm("openai:gpt-4o", tpm=1000, environ=env)
    assert "sk-guide" not in repr(guide.budget.__dict__)  # the key is never kept


def test_retry_after_is_read_from_the_provider_error():
    with StubServer(lambda path, body: (429, {"error": {"message": "slow down"}}, {"retry-after": "7"})) as stub:
        model = resolve_mllm("openai:gpt-4o", base_url=stub.url + "/v1", retries=0)
        with pytest.raises(Exception) as info:
            model.invoke("hi")
    assert retry_after(info.value) == 7.0


def test_retry_after_is_capped():
    class Answer:
        headers = {"retry-after": "86400"}

    class Refused(Exception):
        response = Answer()

    assert retry_after(Refused()) == 600.0


def test_budgeted_model_on_a_429_stub_slows_down_and_gets_through():
    answers = iter([openai_error(429, "rate limit"), openai_error(429, "rate limit")])

    def respond(path, body):
        status = next(answers, None)
        if status is not None:
            return (*status, {"retry-after-ms": "10"})
        return 200, openai_completion("fine", prompt_tokens=900, completion_tokens=100)

    with StubServer(respond) as stub:
        model = resolve_mllm("openai:gpt-4o", base_url=stub.url + "/v1", rpm=6000, tpm=600000, retries=3,
                             retry_base_delay=0.01)
        assert model.invoke("hi").content == "fine"
        assert asyncio.run(model.ainvoke("again")).content == "fine"
    budget = model.budget
    assert budget.rate_limited == 2 and budget.calls == 2 and budget.used_tokens == 2000
    assert budget.limiter.limit < 64  # cut by the 429s, recovering


def test_shared_budget_refuses_other_numbers_for_the_same_key():
    first = shared_budget("fingerprint-x", 10, None)
    assert shared_budget("fingerprint-x", 10, None) is first
    with pytest.raises(BackendError, match="10 requests/min"):
        shared_budget("fingerprint-x", 20, None)
