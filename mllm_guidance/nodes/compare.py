"""Compare (``judge_mode="pairwise"``): when the new image ties the best so far, the MLLM says which
of the two fits the prompt better, and the best-of-K choice follows it (Maestro-style pairwise
judging: Wan et al., "Maestro: Self-Improving Text-to-Image Generation via Agent Orchestration", 2025).

It is asked only on a tie: everywhere else the absolute scores already decide, so a comparison
could not change the output and would cost one call per round. Image A is the best so far, image B
the new one, always in that order (stated in the prompt, so a position bias is at least a fixed one).
An unreadable answer keeps the earlier image, as the absolute rule does on ties.
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.config import GuidanceConfig
from mllm_guidance.context import Context
from mllm_guidance.nodes.ask import Answer, ModelNode, Request
from mllm_guidance.prompts.steps import STEPS
from mllm_guidance.state import GuidanceState


def needs_comparison(state: GuidanceState) -> bool:
    """Whether the latest judged image ties the best so far (another round, same score, not good)."""
    if not state.rounds or state.best is None:
        return False
    current, best = state.rounds[-1], state.rounds[state.best]
    return (current.index != best.index and current.score is not None and current.score == best.score
            and not current.good and current.comparison is None)


class CompareNode(ModelNode):
    step = STEPS["compare"]

    def request(self, state: GuidanceState, ctx: Context) -> Request:
        current, best = state.rounds[-1], state.rounds[state.best]  # type: ignore[index]
        images = [self.image_message(ctx, best.image), self.image_message(ctx, current.image)]
        messages = ctx.templates.messages("compare", state.prompt, images=images)
        return Request(round=current.index, messages=messages, images=[best.image, current.image])

    def decide(self, state: GuidanceState, answer: Answer, cfg: GuidanceConfig) -> dict[str, Any]:
        current, best = state.rounds[-1], state.best
        if answer.value is None:
            note = f"unreadable comparison with round {best}: kept round {best}"
        else:
            note = f"{'B (this round)' if answer.value == 'B' else f'A (round {best})'} is better: {answer.reasoning}"
        updates: dict[str, Any] = {"rounds": [current.model_copy(update={"comparison": note})]}
        if answer.value == "B":
            updates["best"] = current.index
        return updates

    def event(self, updates: dict[str, Any], answer: Answer) -> dict[str, Any]:
        return {"better": answer.value}
