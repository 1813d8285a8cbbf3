"""Generate: the frozen layout-to-image model renders the current plan, I_k = grounded_t2i(C, O_k).

The image goes to the run directory; state keeps its reference. The seed of round k comes from
the config's seed policy: by default the same seed every round, so that only the layout changes.
The render runs in a worker thread (the event loop stays free for other runs' MLLM calls) and
holds its device for its whole duration (``backends.generator.render``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from langgraph.runtime import Runtime

from mllm_guidance.backends.generator import GenerationRequest, render
from mllm_guidance.config import GuidanceConfig
from mllm_guidance.context import Context
from mllm_guidance.errors import BackendError, GuidanceError
from mllm_guidance.images import check_image
from mllm_guidance.state import GuidanceState, Plan, Round, Usage


class GenerateNode:
    def __init__(self, config: GuidanceConfig) -> None:
        self.config = config

    async def __call__(self, state: GuidanceState, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx, cfg = runtime.context, self.config
        k = len(state.rounds)
        plan = state.plan if (state.plan is not None and cfg.uses_layout) else Plan(layout=None, source="none")
        default_w, default_h = ctx.generator.default_size
        request = GenerationRequest(
            prompt=state.prompt,
            layout=plan.layout,
            seed=cfg.round_seed(state.seed, k),
            width=cfg.width or default_w,
            height=cfg.height or default_h,
            steps=cfg.steps,
            guidance_scale=cfg.guidance_scale,
            negative_prompt=cfg.negative_prompt,
        )
        runtime.stream_writer({"event": "generating", "step": "generate", "round": k})
        started = time.perf_counter()

        def render_and_save() -> tuple[Any, Any, float]:
            generated = render(ctx.generator, request)
            seconds = time.perf_counter() - started
            generated.notes.extend(check_image(generated.image, (request.width, request.height)))
            return generated, ctx.store.save_image(generated.image, f"round-{k}.png"), seconds

        try:
            generated, ref, seconds = await asyncio.to_thread(render_and_save)
        except GuidanceError:
            raise
        except Exception as exc:
            raise BackendError(
                f"the generator {getattr(ctx.generator, 'name', '?')} failed on round {k}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        new_round = Round(
            index=k,
            layout=plan.layout,
            layout_source=plan.source,
            layout_reasoning=plan.reasoning,
            layout_warnings=plan.layout.rule_warnings() if plan.layout is not None else [],
            seed=request.seed,
            image=ref,
            generator_notes=list(generated.notes),
            seconds=round(seconds, 4),
        )
        updates: dict[str, Any] = {"rounds": [new_round], "usage": Usage().add_generation(seconds)}
        if not cfg.aligns:
            updates["stop_reason"] = "rendered"
        elif cfg.mode == "align" and state.align_rounds >= cfg.max_align_rounds:
            updates["stop_reason"] = "max_rounds"
        runtime.stream_writer({"event": "step", "step": "generate", "round": k, "seconds": round(seconds, 3)})
        return updates
