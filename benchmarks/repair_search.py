"""Region repair and candidate search against the full method: renders, MLLM calls, seconds and scores per image.

Four configurations of the ``full`` method, each over the same prompts and seeds:

=========  ==================================================================================
full       the thesis's loop: every align round renders anew
+repair    ``repair`` (default ``auto``): later rounds repaint only the changed objects' boxes
+search    ``candidates`` N (default 4) ranked by ``verifier`` (default ``clip``) every render
both       repair and search: N candidate repairs a round
=========  ==================================================================================

On a GPU, with real models (what the published comparisons need; nothing here can be measured
without weights)::

    python benchmarks/repair_search.py --mllm openai:gpt-4o --generator gligen-xl \\
        --datasets spatial,non-spatial,rls300 --limit 100 --scorer mllm --out bench-out/repair_search

``--scorer mllm`` adds T2I-CompBench's GPT-4o judge (``eval/judge.py``) to every image; the guide's
own final score is reported always. Each configuration and dataset is an ordinary ``bench`` output
directory (``results.jsonl``, ``runs/``, ``summary.md``): rerunning continues where it stopped, and
``mllm-guidance bench compare`` reads them.

``--fast`` runs the same code on tiny random-weight models (GLIGEN, CLIP) with a scripted planner
and judge that keeps the loop going for three rounds, in seconds on a CPU: it checks the
accounting (renders, calls, repaired rounds) end to end, and CI runs it. Its scores and seconds
mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATASETS = "spatial,non-spatial,rls300"


def configurations(repair: str, candidates: int, verifier: str, verifier_model: str | None) -> dict[str, dict[str, Any]]:
    search = {"candidates": candidates, "verifier": verifier, "verifier_model": verifier_model}
    return {"full": {}, "+repair": {"repair": repair}, "+search": search, "both": {"repair": repair, **search}}


def run_one(name: str, dataset: str, out: Path, mllm: Any, generator: Any, config: dict[str, Any], args: Any,
            scorers: list[Any]) -> dict[str, Any]:
    """One configuration on one dataset: the bench runner, then the per-image figures."""
    from mllm_guidance.eval.runner import BenchSpec, run_bench
    from mllm_guidance.eval.scorers import score_records

    target = out / name.replace("+", "plus-") / dataset
    spec = BenchSpec(dataset=dataset, out=target, method="full", seed=args.seed, mllm=mllm, generator=generator,
                     config={k: v for k, v in {**args.base_config, **config}.items() if v is not None},
                     generator_options=args.generator_options, limit=args.limit, concurrency=args.concurrency)
    started = time.perf_counter()
    records = asyncio.run(run_bench(spec))
    wall = time.perf_counter() - started
    if scorers:
        records = score_records(target, records, scorers)
    ok = [r for r in records if r.get("status") == "ok"]
    repaired, judged = [], []
    for r in ok:
        rounds = json.loads((target / r["run_dir"] / "run.json").read_text())["rounds"]
        repaired.append(sum(1 for x in rounds if (x.get("repair") or {}).get("repaired")))
        judged.append(r.get("metrics", {}).get("mllm"))

    def mean(values: list[Any]) -> float | None:
        values = [v for v in values if v is not None]
        return round(statistics.fmean(values), 4) if values else None

    return {
        "configuration": name, "dataset": dataset, "images": len(ok), "failed": len(records) - len(ok),
        "renders/img": mean([r["generator_calls"] for r in ok]),
        "MLLM calls/img": mean([r["mllm_calls"] for r in ok]),
        "rounds/img": mean([r["rounds_used"] for r in ok]),
        "repaired rounds/img": mean(repaired),
        "seconds/img": mean([r["seconds"] for r in ok]),
        "render s/img": mean([r["generator_seconds"] for r in ok]),
        "guide score": mean([r["final_score"] for r in ok]),
        "judge score": mean(judged),
        "wall s": round(wall, 2),
        "per image": [{"key": r["key"], "renders": r["generator_calls"], "mllm_calls": r["mllm_calls"],
                       "seconds": r["seconds"], "guide_score": r["final_score"], "judge": r.get("metrics", {}).get("mllm"),
                       "repaired_rounds": n} for r, n in zip(ok, repaired, strict=True)],
    }


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["configuration", "dataset", "images", "renders/img", "MLLM calls/img", "rounds/img", "repaired rounds/img",
            "seconds/img", "render s/img", "guide score", "judge score"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join("–" if row[c] is None else str(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Output directory (one bench directory per configuration and dataset).")
    parser.add_argument("--fast", action="store_true", help="Tiny random models and a scripted planner (CI, no GPU).")
    parser.add_argument("--mllm", default=None, help="The guide's MLLM, e.g. openai:gpt-4o.")
    parser.add_argument("--generator", default="gligen-xl")
    parser.add_argument("--model-path", default=None, help="The generator's weights (default: its own).")
    parser.add_argument("--datasets", default=DATASETS)
    parser.add_argument("--limit", type=int, default=None, help="Prompts per dataset.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repair", default="auto", choices=["regions", "auto"])
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--verifier", default="clip")
    parser.add_argument("--verifier-model", default=None)
    parser.add_argument("--scorer", default="", help="Comma-separated bench scorers, e.g. mllm (T2I-CompBench's judge).")
    parser.add_argument("--only", default=None, help="Comma-separated configurations (default: all four).")
    args = parser.parse_args(argv)
    args.base_config, args.generator_options = {}, {}
    out = Path(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        if args.fast:
            from mllm_guidance.backends.gligen import GligenGenerator
            from tests.backends.tiny_diffusion import build_tiny_clip, build_tiny_gligen
            from tests.fakes import LoopChatModel

            mllm: Any = LoopChatModel(rounds=3)
            generator: Any = GligenGenerator(str(build_tiny_gligen(Path(tmp) / "gligen")), steps=2)
            args.verifier_model = args.verifier_model or str(build_tiny_clip(Path(tmp) / "clip"))
            args.base_config = {"width": 64, "height": 64, "max_align_rounds": 3}
            args.limit = args.limit or 2
            args.concurrency = 2
        else:
            if not args.mllm:
                parser.error("give --mllm (e.g. openai:gpt-4o), or --fast for the tiny-model check")
            mllm, generator = args.mllm, args.generator
            if args.model_path:
                args.generator_options = {"model": args.model_path}
        scorers = []
        names = [s for s in args.scorer.split(",") if s]
        if names:
            from mllm_guidance.eval.scorers import build_scorers

            scorers = build_scorers(names)
        configs = configurations(args.repair, args.candidates, args.verifier, args.verifier_model)
        wanted = args.only.split(",") if args.only else list(configs)
        rows = [run_one(name, dataset, out, mllm, generator, configs[name], args, scorers)
                for dataset in args.datasets.split(",") for name in wanted]
    (out / "repair_search.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
