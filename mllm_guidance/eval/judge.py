"""MLLM judges: T2I-CompBench's MLLM evaluation (scorer ``mllm``, the thesis's judge) and the
guide's own reason rubric (scorer ``mllm-reason``).

The thesis scored its images with GPT-4o "using T2I-CompBench's evaluation method" (chapters
5.3.3 and 6.4.1). T2I-CompBench publishes that method twice (Karine-Huang/T2I-CompBench, prompts
unchanged from ac7b5aa, 2024-03-13, to 1b70949, 2026-05-07); both are shipped verbatim as data in
``data/t2i-compbench/judge/`` (MIT, see the NOTICE there):

- ``MLLM_eval/gpt4v_eval.py`` (its GPT-4V script): one user turn, the image then a
  category-specific instruction with a 1..5 rubric and a JSON answer ``{"score": .., "explanation": ..}``.
  It has two bugs. ``elif category == "spatial" or "3d_spatial":`` is always true, so every
  category but color/shape/texture gets the *spatial* instruction (the action, numeracy and
  complex branches are dead code). And the complex instruction is not an f-string: had it run, it
  would have sent the literal text ``{prompt_name}`` instead of the prompt.
- ``MLLM_eval/ShareGPT4V-CoT_eval/Share_eval.py`` (its chain-of-thought protocol): two turns, the
  image with "Briefly describe the image within 50 words" (category-specific), then the scoring
  instruction that refers to "your previous answer", 1..5 rubric, the same JSON answer. Its
  category dispatch is right.

``protocol`` picks one: ``gpt4v`` (default): the GPT script's per-category instructions as its
authors wrote them (spatial for spatial and 3d-spatial, action for non-spatial, complex for
complex and RLS-300), the prompt filled in; it is the script T2I-CompBench gives for GPT models,
which is what "GPT-4o with T2I-CompBench's method" most plausibly ran. ``gpt4v-as-run``: what that
script really sent (the spatial instruction for every category), for reproducing numbers made
with it. ``cot``: the describe-then-score protocol.

Differences from the upstream scripts, on purpose: images go as standard image content blocks
(PNG; upstream labels PNG bytes as JPEG); the judge's temperature is 0 by default (upstream sets
none: the API's 1); ``max_tokens`` is not capped at 300; ``ASSISTANT:`` (the LLaVA chat
template's role marker in the CoT turn) is left to the chat API's roles; an answer without a
readable 1..5 score is asked again with the reason (at most ``parse_retries`` times) and then left
unscored and counted, where ``gpt4v_eval.py`` averages every ``"score": N,`` it finds and counts an
answer without one as 0, and ``Share_eval.py`` counts it as 100.

Scores are reported on a stated scale (``SCALES``): ``raw`` (mean 1..5), ``s/5``, ``(s-1)/4`` or
``pass@5`` (share of the image's answers that are 5; over a run: the share of images scored 5).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import TYPE_CHECKING, Any

from mllm_guidance.errors import InputError

if TYPE_CHECKING:
    from mllm_guidance.eval.scorers import ScoreItem

UPSTREAM = "Karine-Huang/T2I-CompBench @ ac7b5aa"
CATEGORIES = ("spatial", "3d-spatial", "non-spatial", "complex", "numeracy")
PROTOCOLS = ("gpt4v", "gpt4v-as-run", "cot")
SCALES = ("raw", "s/5", "(s-1)/4", "pass@5")
DEFAULT_JUDGE = "openai:gpt-4o"
DEFAULT_SCALE = "s/5"
#: The benchmark's name for each category's instruction (3d-spatial shares spatial's in both scripts).
_UPSTREAM_CATEGORY = {"spatial": "spatial", "3d-spatial": "spatial", "non-spatial": "action", "complex": "complex", "numeracy": "numeracy"}
_PROTOCOL_ABOUT = {
    "gpt4v": "T2I-CompBench MLLM_eval/gpt4v_eval.py, per-category instructions as intended (one turn)",
    "gpt4v-as-run": "T2I-CompBench MLLM_eval/gpt4v_eval.py as it ran: the spatial instruction for every category (one turn)",
    "cot": "T2I-CompBench MLLM_eval/ShareGPT4V-CoT_eval/Share_eval.py: describe, then score (two turns)",
}
_RETRY = ("Your answer could not be read: {error}. Answer again in JSON format with the keys score "
          "(an integer from 1 to 5) and explanation.")


def check_category(category: str) -> str:
    name = category.strip().lower().replace("_", "-")
    if name not in CATEGORIES:
        raise InputError(f"judge category {category!r}: choose from {', '.join(CATEGORIES)}")
    return name


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise InputError(f"judge scale {scale!r}: choose from {', '.join(SCALES)}")
    return scale


def apply_scale(scores: Sequence[int], scale: str) -> float:
    """One image's value on ``scale`` from its judge's 1..5 answers (one per repeat)."""
    mean = sum(scores) / len(scores)
    if scale == "raw":
        return mean
    if scale == "s/5":
        return mean / 5
    if scale == "(s-1)/4":
        return (mean - 1) / 4
    if scale == "pass@5":
        return sum(s == 5 for s in scores) / len(scores)
    raise InputError(f"judge scale {scale!r}: choose from {', '.join(SCALES)}")


@dataclass(frozen=True)
class JudgePrompts:
    """One protocol's texts for one category; ``${prompt}`` marks where the prompt goes."""

    describe: str | None
    score: str
    version: str

    def score_text(self, prompt: str) -> str:
        return Template(self.score).safe_substitute(prompt=prompt)


def judge_prompts(protocol: str, category: str) -> JudgePrompts:
    if protocol not in PROTOCOLS:
        raise InputError(f"judge protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")
    upstream = _UPSTREAM_CATEGORY[check_category(category)]
    if protocol == "cot":
        return JudgePrompts(_judge_file(f"cot-{upstream}-describe.txt"), _judge_file(f"cot-{upstream}-score.txt"), prompt_set_version())
    name = "spatial" if protocol == "gpt4v-as-run" else upstream
    return JudgePrompts(None, _judge_file(f"gpt4v-{name}.txt"), prompt_set_version())


@functools.lru_cache(maxsize=None)
def _judge_file(name: str) -> str:
    text = resources.files("mllm_guidance.eval").joinpath("data", "t2i-compbench", "judge", name).read_text(encoding="utf-8")
    return text.removesuffix("\n")  # the files end with one newline the upstream strings do not have


@functools.lru_cache(maxsize=1)
def prompt_set_version() -> str:
    """``t2i-compbench@ac7b5aa+<hash of every judge file>``: recorded with every judged image."""
    folder = resources.files("mllm_guidance.eval").joinpath("data", "t2i-compbench", "judge")
    digest = hashlib.sha256()
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".txt"):
            digest.update(entry.name.encode() + b"\0" + entry.read_bytes())
    return f"t2i-compbench@ac7b5aa+{digest.hexdigest()[:10]}"


def with_temperature(model: Any, temperature: float | None) -> tuple[Any, float | None]:
    """The model set to ``temperature`` where its provider class has that setting, and the
    temperature really in force (None: the provider's own default, not set by us)."""
    from mllm_guidance.backends.retry import RetryingChatModel

    if isinstance(model, RetryingChatModel):  # set it on the provider model, keep the retries
        inner, used = with_temperature(model.wrapped, temperature)
        return model.model_copy(update={"wrapped": inner}), used
    fields = getattr(type(model), "model_fields", {})
    if temperature is None or "temperature" not in fields:
        return model, getattr(model, "temperature", None) if "temperature" in fields else None
    return model.model_copy(update={"temperature": temperature}), temperature


class _Judge:
    """Asks a chat model for a 1..5 score per image, ``repeats`` times, retrying unreadable answers."""

    name = "mllm"
    metric = "mllm"

    def __init__(self, mllm: Any = DEFAULT_JUDGE, *, repeats: int = 1, scale: str = DEFAULT_SCALE, temperature: float | None = 0.0,
                 concurrency: int = 8, parse_retries: int = 2, mllm_options: dict[str, Any] | None = None) -> None:
        from mllm_guidance.backends.mllm import describe_mllm, resolve_mllm

        if repeats < 1:
            raise InputError(f"judge repeats {repeats}: give 1 or more")
        mllm = DEFAULT_JUDGE if mllm is None else mllm  # never the environment's (the guide's) default
        self.spec = mllm if isinstance(mllm, str) else describe_mllm(mllm)
        self.model, self.temperature = with_temperature(resolve_mllm(mllm, **(mllm_options or {})), temperature)
        self.model_name = describe_mllm(self.model)
        self.repeats, self.scale = repeats, check_scale(scale)
        self.concurrency, self.parse_retries = concurrency, parse_retries

    @property
    def settings(self) -> dict[str, Any]:
        """What the answers depend on (the scale does not: it is applied to stored answers)."""
        return {"model": self.spec, "model_class": self.model_name, "temperature": self.temperature, "repeats": self.repeats}

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        return [metrics for metrics, _ in self.score_items(items)]

    def score_items(self, items: Sequence[ScoreItem]) -> list[tuple[dict[str, float], dict[str, Any]]]:
        return asyncio.run(self.ascore_items(items))

    async def ascore_items(self, items: Sequence[ScoreItem]) -> list[tuple[dict[str, float], dict[str, Any]]]:
        gate = asyncio.Semaphore(max(1, self.concurrency))

        async def one(item: ScoreItem) -> tuple[dict[str, float], dict[str, Any]]:
            async with gate:
                asked = [await self._ask(item) for _ in range(self.repeats)]
            details = {**self.item_details(item), "scores": [s for s, _, _ in asked], "calls": sum(c for _, c, _ in asked),
                       "answers": [a[:2000] for _, _, a in asked]}
            return self.metrics_of(details), details

        return list(await asyncio.gather(*(one(item) for item in items)))

    def metrics_of(self, details: dict[str, Any]) -> dict[str, float]:
        """The metric values of one image from its stored answers, on this judge's scale."""
        scored = [s for s in details.get("scores", []) if s is not None]
        details["unscored"] = len(details.get("scores", [])) - len(scored)
        details["spread"] = round(statistics.pstdev(scored), 4) if scored else None
        details["scale"] = self.scale
        if not scored:
            return {}
        return {self.metric: apply_scale(scored, self.scale), f"{self.metric}_raw": sum(scored) / len(scored)}

    def item_details(self, item: ScoreItem) -> dict[str, Any]:
        return {}

    async def _opening(self, item: ScoreItem) -> tuple[list[Any], int]:
        """The messages that ask for the score (and the calls spent getting there)."""
        raise NotImplementedError

    async def _ask(self, item: ScoreItem) -> tuple[int | None, int, str]:
        """(score or None, calls, last answer) of one judgement."""
        from langchain_core.messages import AIMessage, HumanMessage

        from mllm_guidance.errors import ScoreParseError
        from mllm_guidance.prompts.parse import parse_score

        messages, calls = await self._opening(item)
        text = ""
        for _ in range(self.parse_retries + 1):
            text = await self._call(messages, "judge")
            calls += 1
            try:
                return parse_score(text), calls, text
            except ScoreParseError as exc:
                messages = messages + [AIMessage(content=text), HumanMessage(content=self.retry_text(exc))]
        return None, calls, text

    def retry_text(self, error: Exception) -> str:
        return _RETRY.format(error=error)

    async def _call(self, messages: list[Any], step: str) -> str:
        from mllm_guidance.backends.replay import STEP_KEY
        from mllm_guidance.nodes.ask import message_text

        reply = await self.model.ainvoke(messages, config={"metadata": {STEP_KEY: step}})
        return message_text(reply)


class CompBenchJudge(_Judge):
    """T2I-CompBench's MLLM evaluation (the thesis's judge), by category, on a stated scale."""

    name = "mllm"
    metric = "mllm"

    def __init__(self, mllm: Any = DEFAULT_JUDGE, *, protocol: str = "gpt4v", category: str | None = None, **kwargs: Any) -> None:
        if protocol not in PROTOCOLS:
            raise InputError(f"judge protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")
        self.protocol = protocol
        self.category = check_category(category) if category else None
        super().__init__(mllm, **kwargs)

    @property
    def settings(self) -> dict[str, Any]:
        return {"reference": _PROTOCOL_ABOUT[self.protocol], "protocol": self.protocol, "prompt_version": prompt_set_version(),
                "category_override": self.category, **super().settings}

    def category_of(self, item: ScoreItem) -> str:
        return self.category or check_category(item.category or "complex")

    def item_details(self, item: ScoreItem) -> dict[str, Any]:
        return {"category": self.category_of(item)}

    async def _opening(self, item: ScoreItem) -> tuple[list[Any], int]:
        from langchain_core.messages import AIMessage, HumanMessage

        prompts = judge_prompts(self.protocol, self.category_of(item))
        image = _image_block(item.image)
        score_text = {"type": "text", "text": prompts.score_text(item.prompt)}
        if prompts.describe is None:  # one turn: the image, then the instruction (upstream's order)
            return [HumanMessage(content=[image, score_text])], 0
        first = [HumanMessage(content=[image, {"type": "text", "text": prompts.describe}])]
        description = await self._call(first, "judge-describe")
        return first + [AIMessage(content=description), HumanMessage(content=[score_text])], 1


class ReasonJudge(_Judge):
    """The guide's own reason rubric (1..5 with reasoning) as a judge: what the method stops on,
    so it favours the method against single-shot baselines when judge and guide are one model."""

    name = "mllm-reason"
    metric = "mllm_reason"

    def __init__(self, mllm: Any = DEFAULT_JUDGE, **kwargs: Any) -> None:
        from mllm_guidance.prompts.templates import load_templates

        super().__init__(mllm, **kwargs)
        self.templates = load_templates()

    @property
    def settings(self) -> dict[str, Any]:
        return {"reference": "mllm-guidance reason template (the guide's own rubric)", "prompt_version": self.templates.version,
                **super().settings}

    def retry_text(self, error: Exception) -> str:
        return f"Your answer could not be used: {error}. Answer again in the format of the examples."

    async def _opening(self, item: ScoreItem) -> tuple[list[Any], int]:
        from mllm_guidance.images import ModelImage, png_file

        return self.templates.messages("reason", item.prompt, image=ModelImage(png_file(item.image), "image/png")), 0

    async def _call(self, messages: list[Any], step: str) -> str:
        return await super()._call(messages, "reason")


def _image_block(image: Any) -> dict[str, Any]:
    """A standard LangChain image content block (PNG, base64)."""
    import base64

    from mllm_guidance.images import png_file

    return {"type": "image", "base64": base64.b64encode(png_file(image)).decode("ascii"), "mime_type": "image/png"}
