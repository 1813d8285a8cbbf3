"""run.json: the finished run in one machine-readable file, written by the run layer after the graph.

It holds the spec (what was asked), the state (what happened), the MLLM calls the run used, and
what it cost. It is also a recording: ``--mllm replay:run.json`` plays its ``calls`` back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mllm_guidance.backends.prices import cost_usd, price_for
from mllm_guidance.config import GuidanceConfig
from mllm_guidance.redact import redact
from mllm_guidance.spec import package_versions
from mllm_guidance.state import GuidanceState
from mllm_guidance.store import RUN_FILE, RunStore

if TYPE_CHECKING:
    from mllm_guidance.prompts.templates import TemplateSet
    from mllm_guidance.spec import RunSpec

FORMAT = "mllm-guidance.run/1"


def run_record(store: RunStore, state: GuidanceState, config: GuidanceConfig, templates: TemplateSet,
               spec: RunSpec | None) -> dict[str, Any]:
    """run.json as a dict: the state, the config, the versions and the MLLM calls it used."""
    all_calls = store.calls()
    by_id = {c.get("id"): c for c in all_calls}
    used = [by_id[i] for i in state.call_ids if i in by_id]
    used_ids = set(state.call_ids)
    usage = state.usage
    models = spec.models() if spec is not None else {}
    price = price_for(models.get("mllm_name"), spec.run_settings().prices if spec is not None else {})
    by_step = {
        k: {**v.model_dump(), "estimated_cost_usd": cost_usd(v.input_tokens, v.output_tokens, price)}
        for k, v in usage.mllm.items()
    }
    return {
        "format": FORMAT,
        "prompt": state.prompt,
        "seed": state.seed,
        "mode": config.mode,
        "config": config.describe(),
        "settings": spec.run_settings().describe() if spec is not None else None,
        "models": models,
        "thread_id": spec.thread_id if spec is not None else None,
        "created": spec.created if spec is not None else None,
        "template_set": {"version": templates.version, "source": templates.source},
        "versions": dict(package_versions()),
        "stop_reason": state.stop_reason,
        "best_round": state.best,
        "final_image": state.final_image.model_dump() if state.final_image else None,
        "score": state.rounds[state.best].score if state.best is not None and state.rounds else None,
        "rounds": [r.model_dump(mode="json") for r in state.rounds],
        "corrections": [c.model_dump(mode="json") for c in state.corrections],
        "failures": [f.model_dump(mode="json") for f in state.failures],
        "reviews": [r.model_dump(mode="json") for r in state.reviews],
        "usage": {
            "mllm_calls": usage.mllm_calls,
            "generator_calls": usage.generator_calls,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "mllm_seconds": round(sum(s.seconds for s in usage.mllm.values()), 4),
            "generator_seconds": round(usage.generator_seconds, 4),
            "generator_cost_usd": round(usage.generator_cost_usd, 4),  # billed by a hosted generator (bfl:)
            "by_step": by_step,
            "price_usd_per_1m_tokens": list(price) if price else None,
            "estimated_cost_usd": cost_usd(usage.input_tokens, usage.output_tokens, price),
        },
        "calls": used,
        "abandoned_calls": [c for c in all_calls if c.get("id") not in used_ids],
    }


def write_evidence(store: RunStore, state: GuidanceState, config: GuidanceConfig, templates: TemplateSet,
                   spec: RunSpec | None) -> dict[str, Any]:
    """Write run.json and report.html for a finished run; return the run record."""
    from mllm_guidance.evidence.report import write_report

    record = redact(run_record(store, state, config, templates, spec))  # run.json and the report alike
    store.write_json(RUN_FILE, record)
    write_report(store, state, record)
    return record
