"""Retrying MLLM calls that may succeed later.

Failures are classified by ``errors.classify`` (which also words the ones that will not succeed,
``errors.explain``). Rate limits (429), server errors (5xx), timeouts and dropped connections are
retried with exponential backoff and jitter (longer where the provider's ``Retry-After`` asks for
it); authentication, bad requests and unknown models are not, because the same call would fail the
same way.

The retry lives on the model: ``resolve_mllm`` wraps every provider model in a
``RetryingChatModel`` (client-level retries switched off, so this one policy is the only one and
its budget is the one the user set). Whoever calls the model, a graph node, the benchmark's judge
or an agent through the tool, gets the same policy. Each try is also bounded as a whole
(``timeout``): a server that trickles bytes cannot hold a call past it. A model built with
``--mllm-rpm`` / ``--mllm-tpm`` also carries its key's ``rate_limit.MllmBudget``: every try waits
for its turn in it, and reports its tokens or its 429 back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import RunnableBinding
from pydantic import Field

from mllm_guidance.backends.rate_limit import MllmBudget, retry_after, tokens_of
from mllm_guidance.errors import RETRYABLE, classify

T = TypeVar("T")


@dataclass
class RetryPolicy:
    """``retries`` extra tries after the first, waiting base * 2^n (capped), with equal jitter."""

    retries: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delay(self, attempt: int, exc: BaseException | None = None) -> float:
        """The backoff, or longer where the provider asked for it (``Retry-After``)."""
        ceiling = min(self.max_delay, self.base_delay * 2**attempt)
        asked = retry_after(exc) if exc is not None else None
        return max(asked or 0.0, ceiling / 2 + random.uniform(0, ceiling / 2))

    def call(self, fn: Callable[[], T], on_retry: Callable[[int, str, BaseException], None] | None = None) -> T:
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                self._give_up_or_report(exc, attempt, on_retry)
                self.sleep(self.delay(attempt, exc))
                attempt += 1

    async def acall(self, fn: Callable[[], Awaitable[T]],
                    on_retry: Callable[[int, str, BaseException], None] | None = None) -> T:
        attempt = 0
        while True:
            try:
                return await fn()
            except Exception as exc:
                self._give_up_or_report(exc, attempt, on_retry)
                await asyncio.sleep(self.delay(attempt, exc))
                attempt += 1

    def _give_up_or_report(self, exc: Exception, attempt: int,
                           on_retry: Callable[[int, str, BaseException], None] | None) -> None:
        kind = classify(exc)
        if kind not in RETRYABLE or attempt >= self.retries:
            exc.mllm_guidance_tries = attempt + 1  # type: ignore[attr-defined]
            raise exc
        if on_retry is not None:
            on_retry(attempt + 1, kind, exc)


class RetryingChatModel(BaseChatModel):
    """A provider chat model with this module's retry policy and a whole-call deadline per try.

    It is a chat model itself: tools and structured output bind through it (so bound calls are
    retried too), and attributes it does not have are read from the wrapped model
    (``model_name``, ``openai_api_base``...). Retries are reported to a running graph's stream as
    ``mllm_retry`` events.
    """

    wrapped: BaseChatModel
    retries: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    timeout: float | None = None
    budget: MllmBudget | None = Field(default=None, exclude=True)

    @property
    def _llm_type(self) -> str:
        return self.wrapped._llm_type

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {**self.wrapped._identifying_params, "retries": self.retries}

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # type: ignore[misc]
        except AttributeError:
            wrapped = self.__dict__.get("wrapped")
            if wrapped is None or name.startswith("__"):
                raise
            return getattr(wrapped, name)

    def policy(self) -> RetryPolicy:
        return RetryPolicy(retries=self.retries, base_delay=self.base_delay, max_delay=self.max_delay)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        budget = self.budget
        estimate = budget.estimate(messages) if budget is not None else (0, 0)

        def once() -> ChatResult:
            if budget is None:
                return self.wrapped._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
            ticket = budget.acquire_blocking(*estimate)
            try:
                result = self.wrapped._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
            except BaseException as exc:
                _refused(budget, ticket, exc)
                raise
            budget.finish(ticket, tokens=tokens_of(result) or ticket.tokens)
            return result

        return self.policy().call(once, _reporter(run_manager))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                         **kwargs: Any) -> ChatResult:
        budget = self.budget
        estimate = budget.estimate(messages) if budget is not None else (0, 0)

        async def attempt() -> ChatResult:
            call = self.wrapped._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)
            if self.timeout is None:
                return await call
            try:
                return await asyncio.wait_for(call, self.timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no complete answer within {self.timeout:g} s") from None

        async def once() -> ChatResult:
            if budget is None:
                return await attempt()
            ticket = await budget.acquire(*estimate)
            try:
                result = await attempt()
            except BaseException as exc:
                _refused(budget, ticket, exc)
                raise
            budget.finish(ticket, tokens=tokens_of(result) or ticket.tokens)
            return result

        return await self.policy().acall(once, _reporter(run_manager))

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Any:
        """Bind tools the way the wrapped model does, keeping the retries."""
        bound = self.wrapped.bind_tools(tools, **kwargs)
        if isinstance(bound, RunnableBinding) and bound.bound is self.wrapped:
            return self.bind(**bound.kwargs)
        return bound


def _refused(budget: MllmBudget, ticket: Any, exc: BaseException) -> None:
    """Give a failed try's place back: a 429 tells the budget to slow down; anything else only frees
    the slot (its tokens stay taken: the provider may have counted them)."""
    limited = isinstance(exc, Exception) and classify(exc) == "rate_limit"
    budget.finish(ticket, rate_limited=limited, retry_after=retry_after(exc) if limited else None)


def _reporter(run_manager: Any) -> Callable[[int, str, BaseException], None]:
    """Tell a running graph that a call is being retried (nothing outside a graph)."""

    def report(tries: int, kind: str, exc: BaseException) -> None:
        from mllm_guidance.prompts.steps import ROUND_KEY, STEP_KEY

        metadata = (getattr(run_manager, "metadata", None) or {}) if run_manager else {}
        try:
            from langgraph.config import get_stream_writer

            write = get_stream_writer()
        except Exception:  # not inside a graph run
            return
        write({"event": "mllm_retry", "step": metadata.get(STEP_KEY), "round": metadata.get(ROUND_KEY),
               "try": tries, "kind": kind})

    return report
