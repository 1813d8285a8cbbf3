"""The ``mllm-guidance`` command line.

    mllm-guidance generate PROMPT [--mllm SPEC] [--generator SPEC] [-k N] [--mode M] [--out DIR]
    mllm-guidance generate --resume DIR
    mllm-guidance plan PROMPT [--mllm SPEC]          the layout only (with a sketch preview)
    mllm-guidance templates show [STEP] | export DIR
    mllm-guidance trace show RUN_DIR                 the rounds as a table
    mllm-guidance bench --dataset rls300 --method full --out results/NAME   a benchmark
    mllm-guidance mcp [--http]                       an MCP server (generate_image, plan_layout)

Errors print one line that says what to do; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO

from mllm_guidance import __version__
from mllm_guidance.config import MODES
from mllm_guidance.errors import GuidanceError, InputError


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GuidanceError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        run_dir = getattr(args, "_run_dir", None)
        hint = f"; continue with: mllm-guidance generate --resume {run_dir}" if run_dir else ""
        print(f"\ninterrupted{hint}", file=sys.stderr)
        return 130


# -- commands ---------------------------------------------------------------------------------


def _generate(args: argparse.Namespace) -> int:
    from mllm_guidance.api import default_run_dir, guide, resume

    progress = Progress(sys.stderr, quiet=args.quiet)
    if args.resume:
        if args.prompt:
            raise InputError("give either a prompt or --resume DIR, not both")
        args._run_dir = args.resume
        progress.say(f"resuming {args.resume}")
        result = resume(args.resume, mllm=args.mllm, generator=args.generator, on_event=progress)
    else:
        if not args.prompt or not args.prompt.strip():
            raise InputError('give a prompt, e.g. mllm-guidance generate "a cat on a sofa"')
        _check_prompt(args.prompt)
        config = _config(args)
        mllm = _mllm_for(args, progress)
        run_dir = Path(args.out) if args.out else default_run_dir(args.prompt)
        args._run_dir = run_dir
        generator = args.generator or _default_generator(progress)
        result = guide(
            args.prompt, mllm=mllm, generator=generator, config=config,
            run_dir=run_dir, checkpoint=not args.no_checkpoint, on_event=progress,
            mllm_options=_mllm_options(args), generator_options=_generator_options(args),
        )
    progress.done()
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    u = result.usage
    per_step = ", ".join(f"{v.calls} {k.replace('_', '-')}" for k, v in u.mllm.items())
    score = f"score {result.score}/5" if result.score is not None else "not judged"
    print(f"best: round {result.best_round}, {score} (stop: {result.stop_reason})")
    print(f"image:  {result.image_path}")
    print(f"report: {Path(result.run_dir) / 'report.html'}")
    print(
        f"calls:  {u.mllm_calls} MLLM ({per_step or 'none'}), {u.generator_calls} generator; "
        f"tokens {u.input_tokens} in / {u.output_tokens} out; {result.seconds:.1f}s"
    )
    if result.failures:
        print(f"note:   {len(result.failures)} unreadable answer(s) were skipped; see run.json")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from mllm_guidance.api import default_run_dir, guide

    progress = Progress(sys.stderr, quiet=args.quiet)
    _check_prompt(args.prompt)
    mode = "place+correct" if args.correct_rounds > 0 else "place"
    config = {"mode": mode, "max_correct_rounds": args.correct_rounds, "seed": 0}
    config.update(_shared_config(args))
    run_dir = Path(args.out) if args.out else default_run_dir(args.prompt)
    result = guide(
        args.prompt, mllm=_mllm_for(args, progress), generator="sketch", config=config,
        run_dir=run_dir, checkpoint=False, on_event=progress, mllm_options=_mllm_options(args),
    )
    progress.done()
    layout = result.layout
    if args.json:
        print(layout.model_dump_json(indent=2) if layout else "null")
        return 0
    print(layout.to_lines() if layout and not layout.is_empty else "(no layout)")
    for warning in layout.rule_warnings() if layout else []:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"preview: {result.image_path}", file=sys.stderr)
    return 0


def _mcp(args: argparse.Namespace) -> int:
    try:
        from mllm_guidance.mcp_server import create_server
    except ImportError as exc:
        raise InputError(f"the MCP server needs the mcp package: pip install 'mllm-guidance[mcp]' ({exc})") from None
    server = create_server(
        mllm=args.mllm, generator=args.generator, config=_shared_config(args), runs_dir=args.runs_dir,
        mllm_options=_mllm_options(args), generator_options=_generator_options(args), host=args.host, port=args.port,
    )
    server.run(transport="streamable-http" if args.http else "stdio")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from mllm_guidance.eval import tables
    from mllm_guidance.eval.datasets import list_datasets

    action = getattr(args, "bench_action", None)
    if action == "datasets":
        for name, count, about in list_datasets():
            print(f"{name:<12} {count:>4}  {about}")
        return 0
    if action == "compare":
        print(tables.markdown(tables.compare(args.dirs)))
        return 0
    if action == "correlate":
        from mllm_guidance.eval.runner import RESULTS, read_results

        rows = tables.correlate(read_results(Path(args.dir) / RESULTS), args.human)
        print(tables.markdown(rows))
        return 0
    return _bench_run(args)


def _bench_run(args: argparse.Namespace) -> int:
    import asyncio

    from mllm_guidance.eval import tables
    from mllm_guidance.eval.runner import BenchSpec, rewrite_results, run_bench
    from mllm_guidance.eval.scorers import build_scorers, score_records

    if not args.dataset or not args.out:
        raise InputError("give --dataset and --out (or: bench datasets | compare DIR... | correlate --human CSV DIR)")
    try:
        index, count = (int(x) for x in args.shard.split("/"))
    except ValueError:
        raise InputError(f"--shard {args.shard!r}: give i/n, e.g. 0/4") from None
    out = Path(args.out)
    spec = BenchSpec(
        dataset=args.dataset, out=out, method=args.method, images_per_prompt=args.images_per_prompt, seed=args.seed,
        mllm=args.mllm if args.mllm or args.method == "plain" else _mllm_for(args, Progress(sys.stderr)),
        generator=args.generator or "sketch", config={"max_align_rounds": args.max_rounds, **_shared_config(args)},
        mllm_options=_mllm_options(args), generator_options=_generator_options(args), shard=(index, count),
        concurrency=args.concurrency, limit=args.limit,
    )
    scorers = [s.strip() for s in (args.scorer or "").split(",") if s.strip()]
    built = build_scorers(scorers, **_scorer_options(args)) if scorers else []  # a missing key fails before any image
    records = asyncio.run(run_bench(spec, quiet=args.quiet))
    if built:
        records = score_records(out, records, built)
        rewrite_results(out, records)
    row = tables.write_summary(out, records)
    print(tables.summary_markdown(row))
    failed = [r for r in records if r.get("status") != "ok"]
    if failed:
        print(f"{len(failed)} item(s) failed; see results.jsonl (rerun the same command to retry them)", file=sys.stderr)
    return 0


def _scorer_options(args: argparse.Namespace) -> dict[str, Any]:
    """ScorerOptions fields from the bench flags (unset flags keep the references' defaults)."""
    judge_options: dict[str, Any] = {"timeout": args.mllm_timeout}
    if args.judge_base_url:
        judge_options["base_url"] = args.judge_base_url
    temperature = None if str(args.judge_temperature).lower() == "none" else _float(args.judge_temperature, "--judge-temperature")
    return {
        "judge": args.judge, "judge_protocol": args.judge_protocol, "judge_category": args.judge_category,
        "judge_repeats": args.judge_repeats, "judge_scale": args.judge_scale, "judge_temperature": temperature,
        "judge_options": judge_options, "judge_concurrency": args.concurrency,
        "clip_model": args.clip_model, "clip_complex_rule": args.clip_complex_rule,
        "blip_vqa_model": args.blip_vqa_model, "blip_vqa_questions": args.blip_vqa_questions,
        "blip_vqa_image_size": args.blip_vqa_image_size, "blip_clip_recipe": args.blip_clip_recipe,
        "blip_clip_captioner": args.blip_clip_captioner, "blip_clip_clip_model": args.blip_clip_clip_model,
        "device": args.scorer_device,
    }


def _float(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{flag} {text!r}: give a number, or none for the provider's default") from None


def _trace(args: argparse.Namespace) -> int:
    from mllm_guidance.tracing import show

    print(show(args.run_dir))
    return 0


def _templates(args: argparse.Namespace) -> int:
    from mllm_guidance.prompts.templates import STEPS, export_templates, load_templates

    if args.action == "export":
        if not args.target:
            raise InputError("give the directory to export into: mllm-guidance templates export DIR")
        for path in export_templates(args.target):
            print(path)
        return 0
    templates = load_templates(args.templates)
    steps = [args.target] if args.target else list(STEPS)
    for step in steps:
        if step not in STEPS:
            raise InputError(f"unknown step {step!r}; choose from {', '.join(STEPS)}")
        tpl = templates.steps[step]
        print(f"===== {step} ({templates.version}) =====\n{tpl.instructions}\n--- request ---\n{tpl.request.template}\n")
    return 0


# -- helpers ----------------------------------------------------------------------------------


def _check_prompt(prompt: str) -> None:
    from mllm_guidance.state import check_prompt

    try:
        check_prompt(prompt)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _default_generator(progress: Progress) -> str:
    from mllm_guidance.backends.generator import default_generator_spec

    spec, why = default_generator_spec()
    progress.say(f"generator: {spec} ({why})")
    return spec


def _mllm_for(args: argparse.Namespace, progress: Progress) -> str | None:
    if args.mllm:
        return args.mllm
    if getattr(args, "mode", None) == "plain":
        return None
    from mllm_guidance.backends.mllm import default_mllm_spec

    spec, why = default_mllm_spec()
    progress.say(f"MLLM: {spec} ({why}; choose another with --mllm)")
    return spec


def _mllm_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {"timeout": args.mllm_timeout}
    for key in ("base_url", "device", "dtype"):
        if getattr(args, f"mllm_{key}") is not None:
            options[key] = getattr(args, f"mllm_{key}")
    return options


def _generator_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.model_path:
        options["model"] = args.model_path
    if args.generator_device:
        options["device"] = args.generator_device
    if args.generator_dtype:
        options["dtype"] = args.generator_dtype
    if args.cpu_offload:
        options["cpu_offload"] = True
    if args.attention_slicing:
        options["attention_slicing"] = True
    return options


def _shared_config(args: argparse.Namespace) -> dict[str, Any]:
    from mllm_guidance.backends.prices import load_prices

    out: dict[str, Any] = {"mllm_retries": args.mllm_retries}
    if args.prices:
        out["prices"] = load_prices(args.prices)
    if args.structured:
        out["structured_steps"] = True
    if args.templates:
        out["templates_dir"] = args.templates
    return out


def _config(args: argparse.Namespace) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "mode": args.mode,
        "max_align_rounds": args.max_rounds,
        "max_correct_rounds": args.correct_rounds if args.correct_rounds is not None else args.max_rounds,
        "is_good": args.good,
        "seed": args.seed,
        "seed_policy": args.seed_policy,
        "parse_retries": args.parse_retries,
    }
    if args.size:
        cfg["width"], cfg["height"] = _size(args.size)
    for key in ("steps", "guidance_scale", "negative_prompt"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg.update(_shared_config(args))
    return cfg


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("×", "x").split("x")
    try:
        w, h = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        raise InputError(f"--size {text!r}: give WIDTHxHEIGHT, e.g. 1024x1024, or one number") from None
    if len(parts) > 2 or not (64 <= w <= 4096 and 64 <= h <= 4096):
        raise InputError(f"--size {text!r}: width and height must be between 64 and 4096")
    return w, h


class Progress:
    """Live progress on stderr: one line per finished step, a status line while waiting."""

    def __init__(self, stream: TextIO, quiet: bool = False) -> None:
        self.stream, self.quiet = stream, quiet
        self.live = stream.isatty()
        self._status = False

    def say(self, text: str) -> None:
        if not self.quiet:
            self._clear()
            print(text, file=self.stream, flush=True)

    def __call__(self, event: dict[str, Any]) -> None:
        if self.quiet:
            return
        kind, step, k = event.get("event"), str(event.get("step", "")).replace("_", "-"), event.get("round")
        if kind == "generating":
            self._show(f"round {k} · generating ...")
        elif kind == "mllm_call":
            if not event.get("ok"):
                self.say(f"{step:<13}round {k} · unreadable answer (attempt {event.get('attempt')}): {event.get('error')}")
            else:
                self._show(f"round {k} · {step} answered")
        elif kind == "mllm_retry":
            self.say(f"{step:<13}round {k} · {event.get('kind')}, retrying (try {event.get('try')})")
        elif kind == "step":
            detail = {
                "place": lambda: f"{event.get('objects')} objects",
                "self-correct": lambda: "changed" if event.get("changed") else "unchanged: layout settled",
                "generate": lambda: f"image in {event.get('seconds')}s",
                "reason": lambda: f"score {event.get('score') if event.get('score') is not None else '?'}/5" + (" · good" if event.get("good") else ""),
                "align": lambda: f"new layout, {event.get('objects')} objects" if not event.get("stop") else f"stop: {event.get('stop')}",
            }.get(step, lambda: "")()
            self.say(f"{step:<13}round {k} · {detail}")
        elif kind == "done":
            self.say(f"{'finish':<13}best round {k} · stop: {event.get('stop')}")

    def _show(self, text: str) -> None:
        if self.live:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self._status = True

    def _clear(self) -> None:
        if self._status:
            self.stream.write("\r\033[K")
            self._status = False

    def done(self) -> None:
        self._clear()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mllm-guidance", description="MLLM Guidance for text-to-image generation.")
    parser.add_argument("--version", action="version", version=f"mllm-guidance {__version__}")
    sub = parser.add_subparsers(dest="command")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--mllm", help="planner/judge: openai:gpt-4o, google_genai:gemini-2.5-flash, replay:RUN.json, ... (default: from API keys in the environment)")
        p.add_argument("--mllm-base-url", metavar="URL", help="server of an OpenAI-compatible (vLLM, llama.cpp, LM Studio) or Ollama MLLM")
        p.add_argument("--mllm-timeout", type=float, default=120.0, metavar="S", help="seconds per MLLM call (default 120)")
        p.add_argument("--mllm-retries", type=int, default=4, metavar="N", help="extra tries on rate limits, 5xx, timeouts, dropped connections (default 4)")
        p.add_argument("--mllm-device", help="device of an in-process (transformers:) MLLM: cuda, mps, cpu (default: auto)")
        p.add_argument("--mllm-dtype", help="dtype of an in-process MLLM: bfloat16, float16, float32 (default: auto)")
        p.add_argument("--prices", metavar="FILE", help='JSON price table, {"model": [USD per 1M input, per 1M output]}')
        p.add_argument("--structured", action="store_true", help="ask for structured (JSON-schema / tool-call) answers instead of text")
        p.add_argument("--templates", metavar="DIR", help="directory whose files override the built-in prompts")
        p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<time>-<prompt>)")
        p.add_argument("--quiet", action="store_true", help="no progress output")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.add_argument("--debug", action="store_true", help="show tracebacks")

    def generator_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--generator", help="layout-to-image model: gligen-xl, gligen, text2image:MODEL, instancediffusion, rich-context, sketch (default: gligen-xl with a CUDA GPU, else sketch, a layout preview)")
        p.add_argument("--model-path", metavar="ID_OR_DIR", help="the generator's weights: a hub id or a local directory")
        p.add_argument("--generator-device", help="cuda, mps or cpu (default: auto)")
        p.add_argument("--generator-dtype", help="float16, bfloat16 or float32 (default: auto)")
        p.add_argument("--cpu-offload", action="store_true", help="offload idle components to the CPU (small GPUs)")
        p.add_argument("--attention-slicing", action="store_true", help="compute attention in slices (less memory, slower)")

    g = sub.add_parser("generate", help="run MLLM Guidance on a prompt")
    g.add_argument("prompt", nargs="?", help="what the image must show")
    common(g)
    generator_flags(g)
    g.add_argument("-k", "--max-rounds", type=int, default=5, help="align rounds K (default 5)")
    g.add_argument("--correct-rounds", type=int, help="self-correct rounds at most (default: K)")
    g.add_argument("--good", type=int, default=5, help="score (1-5) that counts as good (default 5)")
    g.add_argument("--mode", choices=MODES, default="full", help="method or ablation (default full)")
    g.add_argument("--seed", type=int, help="base seed (default: random, recorded)")
    g.add_argument("--seed-policy", choices=["same", "increment"], default="same", help="same seed every round (default) or seed + round")
    g.add_argument("--size", help="WIDTHxHEIGHT (default: the generator's)")
    g.add_argument("--steps", type=int, help="denoising steps (default: the generator's)")
    g.add_argument("--guidance-scale", type=float, help="classifier-free guidance scale")
    g.add_argument("--negative-prompt", help="negative prompt for the generator")
    g.add_argument("--parse-retries", type=int, default=2, help="extra calls after an unreadable answer (default 2)")
    g.add_argument("--no-checkpoint", action="store_true", help="do not write checkpoints (no --resume)")
    g.add_argument("--resume", metavar="DIR", help="continue an interrupted run")
    g.set_defaults(func=_generate)

    p = sub.add_parser("plan", help="the layout only: place and self-correct, with a sketch preview")
    p.add_argument("prompt")
    common(p)
    p.add_argument("--correct-rounds", type=int, default=5, help="self-correct rounds (0: place only)")
    p.set_defaults(func=_plan)

    m = sub.add_parser("mcp", help="serve generate_image and plan_layout over MCP (stdio, or --http)")
    common(m)
    generator_flags(m)
    m.add_argument("--runs-dir", default="runs", help="where each call's run directory goes (default runs)")
    m.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    m.add_argument("--host", default="127.0.0.1", help="HTTP host (default 127.0.0.1)")
    m.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    m.set_defaults(func=_mcp)

    b = sub.add_parser("bench", help="run a benchmark (or: bench datasets | compare DIR... | correlate --human CSV DIR)")
    common(b)
    generator_flags(b)
    b.add_argument("--dataset", help="rls300, spatial, 3d-spatial, non-spatial, complex, or a file (.txt/.jsonl/.csv)")
    b.add_argument("--method", choices=MODES, default="full", help="the graph mode to evaluate (default full)")
    b.add_argument("--images-per-prompt", type=int, default=1)
    b.add_argument("--seed", type=int, default=0, help="image j of a prompt uses seed + j (default 0)")
    b.add_argument("-k", "--max-rounds", type=int, default=5)
    b.add_argument("--scorer", help="comma-separated: mllm (T2I-CompBench judge), mllm-reason (the guide's reason rubric), clipscore, blip-vqa, blip-clip")
    b.add_argument("--judge", default="openai:gpt-4o", help="the MLLM of the mllm / mllm-reason scorers, its own model (default openai:gpt-4o)")
    b.add_argument("--judge-base-url", metavar="URL", help="server of an OpenAI-compatible or Ollama judge (the guide's --mllm-base-url is not used)")
    b.add_argument("--judge-protocol", choices=["gpt4v", "gpt4v-as-run", "cot"], default="gpt4v",
                   help="T2I-CompBench prompt: gpt4v (per category, one turn; default), gpt4v-as-run (their script's spatial prompt for every category), cot (describe, then score)")
    b.add_argument("--judge-category", choices=["spatial", "3d-spatial", "non-spatial", "complex", "numeracy"],
                   help="the judge's T2I-CompBench category (default: the dataset's; rls300 and user files: complex)")
    b.add_argument("--judge-repeats", type=int, default=1, metavar="N", help="ask the judge N times per image and average (default 1)")
    b.add_argument("--judge-scale", choices=["raw", "s/5", "(s-1)/4", "pass@5"], default="s/5",
                   help="how 1..5 judge scores are reported: raw, s/5 (default), (s-1)/4, pass@5 (share scored 5)")
    b.add_argument("--judge-temperature", default="0", metavar="T", help="judge sampling temperature (default 0; none: the provider's default)")
    b.add_argument("--clip-model", default="openai/clip-vit-base-patch32", help="CLIP for clipscore (default openai/clip-vit-base-patch32)")
    b.add_argument("--clip-complex-rule", action="store_true", help="clipscore_cos without adjectives (T2I-CompBench's complex-category rule; needs spaCy's en_core_web_sm)")
    b.add_argument("--blip-vqa-model", default="Salesforce/blip-vqa-capfilt-large", help="BLIP VQA weights (default Salesforce/blip-vqa-capfilt-large)")
    b.add_argument("--blip-vqa-questions", choices=["auto", "spacy", "rules"], default="auto",
                   help="noun chunks from spaCy's en_core_web_sm (the reference) or the rule-based splitter (default auto: spaCy when installed)")
    b.add_argument("--blip-vqa-image-size", type=int, default=480, metavar="PX", help="BLIP-VQA input size (default 480, the reference's)")
    b.add_argument("--blip-clip-recipe", choices=["attend-and-excite", "blip2"], default="attend-and-excite",
                   help="attend-and-excite (BLIP base captions, CLIP ViT-B/16, templates; default) or blip2 (the thesis's BLIP-2 captioner)")
    b.add_argument("--blip-clip-captioner", metavar="ID_OR_DIR", help="captioner weights (default: the recipe's)")
    b.add_argument("--blip-clip-clip-model", default="openai/clip-vit-base-patch16", help="CLIP of blip-clip (default openai/clip-vit-base-patch16)")
    b.add_argument("--scorer-device", help="device of the CLIP / BLIP scorers: cuda, mps, cpu (default: auto)")
    b.add_argument("--shard", default="0/1", help="i/n: this machine's share of the items (default 0/1)")
    b.add_argument("--concurrency", type=int, default=8, help="prompts in flight at once (default 8)")
    b.add_argument("--limit", type=int, help="only the first N prompts")
    b.set_defaults(func=_bench)
    bsub = b.add_subparsers(dest="bench_action")
    bsub.add_parser("datasets", help="list the built-in datasets with counts")
    bc = bsub.add_parser("compare", help="put several runs side by side")
    bc.add_argument("dirs", nargs="+")
    br = bsub.add_parser("correlate", help="Kendall tau and Spearman rho of every metric against human ratings")
    br.add_argument("--human", required=True, help="CSV with a 'rating' column and a 'key' or 'image' column")
    br.add_argument("dir")

    tr = sub.add_parser("trace", help="show a run's rounds as a table")
    tr.add_argument("action", choices=["show"])
    tr.add_argument("run_dir", help="a run directory (with run.json)")
    tr.add_argument("--debug", action="store_true")
    tr.set_defaults(func=_trace)

    t = sub.add_parser("templates", help="show or export the prompt templates")
    t.add_argument("action", choices=["show", "export"])
    t.add_argument("target", nargs="?", help="show: a step name; export: a directory")
    t.add_argument("--templates", metavar="DIR", help="show this directory's set instead of the built-in one")
    t.add_argument("--debug", action="store_true")
    t.set_defaults(func=_templates)
    return parser


if __name__ == "__main__":
    sys.exit(main())
