"""Test doubles: a recording, scripted chat model and counting generators."""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from mllm_guidance.backends.generator import GenerationRequest
from mllm_guidance.backends.replay import STEP_KEY
from mllm_guidance.backends.sketch import SketchGenerator


class RecordingChatModel(BaseChatModel):
    """Answers each step from its own script and records exactly what every call sent.

    A reply is a string (text answer), a dict (tool-call args, for structured output), an
    AIMessage, or an exception instance to raise. ``bind_tools`` returns self, so LangChain's
    ``with_structured_output`` works through tool calls.
    """

    replies: dict[str, list[Any]]
    usage: tuple[int, int] = (100, 20)
    _calls: list[tuple[str, list[BaseMessage]]] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _bound_tools: list[Any] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "recording-fake"

    @property
    def calls(self) -> list[tuple[str, list[BaseMessage]]]:
        return list(self._calls)

    def steps(self) -> list[str]:
        return [s for s, _ in self._calls]

    def bind_tools(self, tools: Any, **kwargs: Any) -> RecordingChatModel:  # type: ignore[override]
        self._bound_tools.append(tools)
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        step = (run_manager.metadata or {}).get(STEP_KEY, "?") if run_manager else "?"
        with self._lock:
            index = sum(1 for s, _ in self._calls if s == step)
            self._calls.append((step, list(messages)))
        script = self.replies.get(step, [])
        if index >= len(script):
            raise AssertionError(f"no scripted reply #{index} for step {step!r}")
        reply = script[index]
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, AIMessage):
            message = reply
        elif isinstance(reply, dict):
            message = AIMessage(content="", tool_calls=[{"name": reply.pop("__tool__", "LayoutAnswer"), "args": reply, "id": f"c{index}"}])
        else:
            message = AIMessage(content=str(reply))
        message.usage_metadata = {"input_tokens": self.usage[0], "output_tokens": self.usage[1], "total_tokens": sum(self.usage)}
        return ChatResult(generations=[ChatGeneration(message=message)])


class CountingGenerator(SketchGenerator):
    """The sketch generator, counting calls and optionally failing on one of them."""

    name = "counting"

    def __init__(self, fail_on: int | None = None) -> None:
        super().__init__()
        self.requests: list[GenerationRequest] = []
        self.fail_on = fail_on

    def generate(self, request: GenerationRequest) -> Any:
        self.requests.append(request)
        if self.fail_on is not None and len(self.requests) == self.fail_on:
            raise RuntimeError("simulated crash of the generator")
        return super().generate(request)


PLACE = "Objects:\n- a man sitting [0.1, 0.45, 0.45, 0.95]\n- a tree [0.35, 0.05, 0.95, 0.9]\n- a bird [0.6, 0.15, 0.75, 0.3]"
CORRECTED = "Reasoning: the man must sit under the tree.\nUpdated objects:\n- a man sitting [0.3, 0.55, 0.6, 0.95]\n- a tree [0.2, 0.05, 0.9, 0.9]\n- a bird [0.6, 0.15, 0.75, 0.3]"
ALIGNED = "Reasoning: the bird must perch in the tree.\nUpdated objects:\n- a man sitting [0.3, 0.55, 0.6, 0.95]\n- a tree [0.2, 0.05, 0.9, 0.9]\n- a bird perched on a branch [0.55, 0.2, 0.7, 0.35]"


def score(n: int, why: str = "checked") -> str:
    return f"Reasoning: {why}.\nScore: {n}"


class StepChatModel(BaseChatModel):
    """Answers every prompt by step (layout, then score 5), after an optional delay; raises for
    prompts containing ``fail_word``. Thread-safe and endless: for benchmark runs."""

    delay: float = 0.0
    fail_word: str | None = None

    @property
    def _llm_type(self) -> str:
        return "step-fake"

    def _answer(self, messages: list[BaseMessage], run_manager: Any) -> ChatResult:
        from tests.stubs import PLANNER_ANSWERS

        step = (run_manager.metadata or {}).get(STEP_KEY, "reason") if run_manager else "reason"
        text = " ".join(str(m.content) for m in messages)
        if self.fail_word and self.fail_word in text:
            raise RuntimeError(f"the planner refuses prompts with {self.fail_word!r}")
        message = AIMessage(content=PLANNER_ANSWERS[step])
        message.usage_metadata = {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        import time

        time.sleep(self.delay)
        return self._answer(messages, run_manager)

    async def _agenerate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        import asyncio

        await asyncio.sleep(self.delay)
        return self._answer(messages, run_manager)


class SlowGenerator(SketchGenerator):
    """The sketch generator holding the device for ``seconds`` per image."""

    name = "slow-sketch"

    def __init__(self, seconds: float = 0.0) -> None:
        super().__init__()
        self.seconds = seconds

    def generate(self, request: GenerationRequest) -> Any:
        import time

        time.sleep(self.seconds)
        return super().generate(request)


class WorkerSketch(SlowGenerator):
    """The slow sketch generator, noting which process drew each image (``pid N``): for tests that
    render on Ray workers. It batches (one sleep per batch), so coalescing shows in the timings."""

    name = "worker-sketch"

    def generate(self, request: GenerationRequest) -> Any:
        return self.generate_batch([request])[0]

    def generate_batch(self, requests: list[GenerationRequest]) -> list[Any]:
        import os
        import time

        from mllm_guidance.backends.generator import Generated

        time.sleep(self.seconds)
        return [Generated(SketchGenerator.generate(self, r).image, [f"pid {os.getpid()}"]) for r in requests]


class RepairingGenerator(CountingGenerator):
    """The counting sketch generator with a repair path: a repair request draws the new layout on a
    darker canvas (so the repainted region visibly differs); the node pastes the rest back."""

    name = "repairing-sketch"
    supports_repair = True

    def generate(self, request: GenerationRequest) -> Any:
        out = super().generate(request)
        if request.repair is not None:
            from PIL import ImageOps

            out.image = ImageOps.invert(out.image.convert("RGB"))
        return out


class LengthVerifier:
    """A stub verifier: scores each image by a fixed list (or the seed order reversed), recording calls."""

    name = "stub"

    def __init__(self, scores: list[float] | None = None) -> None:
        self.scores = scores
        self.calls: list[tuple[str, Any, int]] = []

    def rank(self, prompt: str, layout: Any, images: list[Any]) -> list[float]:
        self.calls.append((prompt, layout, len(images)))
        return list(self.scores) if self.scores is not None else [float(-i) for i in range(len(images))]


class LoopChatModel(StepChatModel):
    """A deterministic planner and judge that keeps the loop going for ``rounds`` renders: scores
    3, 4, ... up to 5 on the last one, and each align moves the bird a little, so every round after
    the first changes one object (a repair case). For benchmark fast paths; endless and thread-safe."""

    rounds: int = 3

    def _answer(self, messages: list[BaseMessage], run_manager: Any) -> ChatResult:
        from mllm_guidance.prompts.steps import ROUND_KEY

        meta = (run_manager.metadata or {}) if run_manager else {}
        step, k = meta.get(STEP_KEY, "reason"), int(meta.get(ROUND_KEY, 0) or 0)
        scene = "- a man sitting [0.1, 0.5, 0.45, 0.95]\n- a tree [0.35, 0.05, 0.95, 0.9]\n"
        if step in ("place", "self_correct"):
            text = ("Reasoning: fine.\nUpdated objects:\n" if step == "self_correct" else "Objects:\n") + scene + \
                "- a bird [0.6, 0.15, 0.75, 0.3]"
        elif step == "reason":
            text = f"Reasoning: round {k}.\nScore: {5 if k + 1 >= self.rounds else min(4, 3 + k)}"
        elif step == "compare":
            text = "Reasoning: the new one.\nBetter: B"
        else:
            x = 0.6 - 0.08 * (k + 1)
            text = f"Reasoning: move the bird.\nUpdated objects:\n{scene}- a bird [{x:.2f}, 0.15, {x + 0.15:.2f}, 0.3]"
        message = AIMessage(content=text)
        message.usage_metadata = {"input_tokens": 10, "output_tokens": 2, "total_tokens": 12}
        return ChatResult(generations=[ChatGeneration(message=message)])
