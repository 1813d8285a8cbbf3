"""Align: the MLLM looks at the latest image and redesigns the layout, O_{k+1} = align(C, I_k).

An empty answer means the MLLM finds that the image already matches: the loop stops ("aligned").
Rendering a layout that did not change, with the same seed, would repeat the same image, so that
ends the loop too ("align_unchanged"); so does an unreadable answer under the same-seed policy
(with seed increments, the last good layout is rendered again with the new seed).
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from mllm_guidance.config import Context, GuidanceConfig, resolve_context
from mllm_guidance.errors import LayoutParseError
from mllm_guidance.nodes.ask import ask
from mllm_guidance.nodes.readers import layout_readers
from mllm_guidance.prompts.schemas import LayoutAnswer
from mllm_guidance.state import Failure, GuidanceState, Plan


class AlignNode:
    def __init__(self, config: GuidanceConfig) -> None:
        self.config = config

    def __call__(self, state: GuidanceState, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx, cfg = resolve_context(runtime), self.config
        current = state.rounds[-1]
        read_text, read_structured = layout_readers(allow_empty=True, image_size=(current.image.width, current.image.height))
        answer = ask(
            ctx, cfg, step="align", round_index=current.index,
            messages=ctx.templates.messages("align", state.prompt, image_png=ctx.store.image_for_model(current.image, cfg.mllm_image_side)),
            read_text=read_text, read_structured=read_structured,
            schema=LayoutAnswer, error_type=LayoutParseError, image=current.image, emit=runtime.stream_writer,
        )
        updates = answer.state_updates(state, "align")
        updates["align_rounds"] = state.align_rounds + 1
        proposal = answer.value
        same_seed = cfg.seed_policy == "same"
        if proposal is None:
            updates["failures"] = state.failures + [
                Failure(step="align", round=current.index, attempts=answer.attempts, error=answer.error or "")
            ]
            if same_seed:
                updates["stop_reason"] = "align_failed"
            else:
                updates["plan"] = Plan(
                    layout=current.layout, source="align", reasoning="(unreadable answer: kept the last layout)"
                )
        elif proposal.is_empty:
            updates["stop_reason"] = "aligned"
        elif same_seed and current.layout is not None and proposal.same_as(current.layout, cfg.layout_tolerance):
            updates["stop_reason"] = "align_unchanged"
        else:
            updates["plan"] = Plan(layout=proposal, source="align", reasoning=answer.reasoning)
        runtime.stream_writer({
            "event": "step", "step": "align", "round": current.index,
            "objects": None if proposal is None else len(proposal),
            "stop": updates.get("stop_reason"),
        })
        return updates
