"""Generate: the frozen layout-to-image model renders the current plan, I_k = grounded_t2i(C, O_k).

The image goes to the run directory, encoded and written in the background while the MLLM judges
it (``RunStore.start_image``: the reference's hash is filled in by the node that reads the image,
or by finish); state keeps its reference. The seed of round k comes from
the config's seed policy: by default the same seed every round, so that only the layout changes.
The render runs in a worker thread (the event loop stays free for other runs' MLLM calls) and
holds its device for its whole duration (``backends.generator.render``).

Two options change what a render is (both off by default, issue 22):

- repair (``config.repair``): from the second round on, the layout diff against the repaired
  image's layout decides a mask (``mllm_guidance.repair``); a generator with a repair path
  repaints only the mask, and the original's pixels outside it are pasted back exactly. The round
  records whether it repaired, the mask and the changed objects, or why it rendered anew.
- candidates (``config.candidates`` N): N images with seeds s, s+1, ... in one batch where the
  generator batches; the verifier ranks them, the best becomes the round's image, every candidate
  and its score is recorded, and every one counts as a render.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from langgraph.runtime import Runtime

from mllm_guidance.backends.generator import GenerationRequest, render_batch, supports_repair
from mllm_guidance.backends.verifier import resolve_verifier
from mllm_guidance.context import Context
from mllm_guidance.errors import BackendError, GuidanceError
from mllm_guidance.images import check_image
from mllm_guidance.repair import RepairInput, composite, plan_repair
from mllm_guidance.state import Candidate, GuidanceState, Plan, RepairRecord, Round


class GenerateNode:
    async def __call__(self, state: GuidanceState, runtime: Runtime[Context]) -> dict[str, Any]:
        ctx = runtime.context
        cfg = ctx.config
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
        record = self.repair_record(state, ctx, plan)
        runtime.stream_writer({"event": "generating", "step": "generate", "round": k,
                               **({"repair": record.repaired} if record is not None else {})})
        started = time.perf_counter()

        rendered_all: list[Any] = []

        def render_and_save() -> tuple[Any, Any, list[Candidate], float]:
            repair = None
            if record is not None and record.repaired:
                base = ctx.store.load_image(state.rounds[record.base_round].image)  # type: ignore[index]
                repair = RepairInput(image=base, boxes=tuple(tuple(b) for b in record.boxes),
                                     key=f"{state.rounds[record.base_round].image.sha256}:{record.boxes}")  # type: ignore[index]
            requests = [dataclasses.replace(request, seed=(request.seed + j) % 2**63, repair=repair)
                        for j in range(cfg.candidates)]
            rendered = render_batch(ctx.generator, requests)
            rendered_all.extend(rendered)  # every candidate is billed
            for r, generated in zip(requests, rendered, strict=True):
                if repair is not None:
                    generated.image = composite(generated.image, repair.image, repair.boxes)
                generated.notes.extend(check_image(generated.image, (r.width, r.height)))
            seconds = time.perf_counter() - started
            if len(rendered) == 1:
                # written in the background while the MLLM looks at it (reason completes the round)
                return rendered[0], ctx.store.start_image(rendered[0].image, ctx.settings.round_image(k)), [], seconds
            scores = self.verify(ctx, state.prompt, plan, [g.image for g in rendered])
            best = max(range(len(rendered)), key=lambda j: (scores[j], -j))  # ties: the lower seed
            candidates = [
                Candidate(seed=r.seed, image=ctx.store.save_image(g.image, ctx.settings.round_image(k).replace(".", f"-candidate-{j}.")),
                          score=round(scores[j], 6), chosen=j == best)
                for j, (r, g) in enumerate(zip(requests, rendered, strict=True))
            ]
            ref = ctx.store.link_image(candidates[best].image, ctx.settings.round_image(k))
            return rendered[best], ref, candidates, seconds

        try:
            generated, ref, candidates, seconds = await asyncio.to_thread(render_and_save)
        except GuidanceError:
            raise
        except Exception as exc:
            raise BackendError(
                f"the generator {getattr(ctx.generator, 'name', '?')} failed on round {k}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        chosen = next((c for c in candidates if c.chosen), None)
        new_round = Round(
            index=k,
            layout=plan.layout,
            layout_source=plan.source,
            layout_reasoning=plan.reasoning,
            layout_warnings=plan.layout.rule_warnings() if plan.layout is not None else [],
            seed=chosen.seed if chosen is not None else request.seed,
            image=ref,
            generator_notes=list(generated.notes),
            seconds=round(seconds, 4),
            repair=record,
            candidates=candidates,
            verifier=cfg.verifier if candidates else None,
            cost_usd=sum(g.cost_usd or 0.0 for g in rendered_all) if any(g.cost_usd is not None for g in rendered_all) else None,
        )
        updates: dict[str, Any] = {"rounds": [new_round]}
        if not cfg.aligns:
            updates["stop_reason"] = "rendered"
        elif cfg.mode == "align" and state.align_rounds >= cfg.max_align_rounds:
            updates["stop_reason"] = "max_rounds"
        runtime.stream_writer({"event": "step", "step": "generate", "round": k, "seconds": round(seconds, 3),
                               "image": ref.path})
        return updates

    def repair_record(self, state: GuidanceState, ctx: Context, plan: Plan) -> RepairRecord | None:
        """Whether this round repairs, which image, inside which mask; or why it renders anew.
        None when repair is off or there is nothing to repair yet (the first round)."""
        cfg = ctx.config
        if cfg.repair == "off" or not state.rounds or plan.layout is None:
            return None
        base_index = state.best if cfg.repair_base == "best" and state.best is not None else len(state.rounds) - 1
        base = state.rounds[base_index]
        if base.layout is None:
            return RepairRecord(repaired=False, base_round=base_index, reason="the image to repair has no layout: rendered anew")
        mask = plan_repair(base.layout, plan.layout, margin=cfg.repair_margin, tolerance=cfg.layout_tolerance)
        record = RepairRecord(repaired=False, base_round=base_index, boxes=[[round(v, 6) for v in b] for b in mask.boxes],
                              share=mask.share, changed=mask.changed)
        if not mask.boxes:
            reason = "no object changed: rendered anew"
        elif cfg.repair == "auto" and mask.share >= cfg.repair_max_share:
            reason = f"the mask covers {mask.share:.0%} of the image (auto repairs below {cfg.repair_max_share:.0%}): rendered anew"
        elif not supports_repair(ctx.generator):
            reason = f"the generator {getattr(ctx.generator, 'name', '?')} has no repair path: rendered anew"
        else:
            return record.model_copy(update={"repaired": True})
        return record.model_copy(update={"reason": reason})

    def verify(self, ctx: Context, prompt: str, plan: Plan, images: list[Any]) -> list[float]:
        """The verifier's score of each candidate (the context's own verifier, else the config's by name)."""
        cfg = ctx.config
        verifier = ctx.verifier or resolve_verifier(cfg.verifier or "", cfg.verifier_model)
        scores = [float(s) for s in verifier.rank(prompt, plan.layout, images)]
        if len(scores) != len(images):
            raise BackendError(f"the verifier {getattr(verifier, 'name', '?')} gave {len(scores)} scores for {len(images)} images")
        return scores
