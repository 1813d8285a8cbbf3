"""Fuzz the answer readers with generated hostile answers and count what became of them.

Each case is one MLLM reply built from a seeded generator of one family (huge numbers, lone
surrogates, NUL bytes, deep brackets, thousands of objects, long names, reasoning tags, scores on
other scales, mixed scripts, terminal escapes, runs that make regexes backtrack, JSON shapes,
token noise). A case goes the way a reply goes in a run: read as a layout, as a score and for its
reasoning; a layout is compared with itself (the self-correct stop test), diffed and checked
against the rules; then the reply, the outcome and the error are written to a call log and a JSON
file and read back.

Outcomes per reader call: a value, a clear (typed) error, or a crash (any other exception, in
the readers or the writing). Each case runs in a worker process; one that takes more than
``--hang`` seconds is stopped, counted as a hang and the next case goes on in a fresh worker.

    python benchmarks/parser_fuzz.py [--cases 4000] [--seed 0] [--hang 5]
    PYTHONPATH=/path/to/other/checkout python benchmarks/parser_fuzz.py   # another version
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Any

BOX = "[0.1, 0.1, 0.5, 0.5]"
WORDS = ["a cat", "a red car", "two dogs", "a man (old)", "a toy doctor's kit", "un chat", "ein Hund", "猫", "кошка",
         "قطة", "חתול", "बिल्ली", "고양이", "🐱 emoji cat", "a cafe\u0301"]
SIZES = [16, 256, 4096, 32_768, 100_000]


def _size(rng: random.Random) -> int:
    return rng.choice(SIZES) if rng.random() < 0.5 else rng.randint(1, 4096)


def _digits(rng: random.Random) -> str:
    return rng.choice("123456789") + "".join(rng.choice("0123456789") for _ in range(rng.choice([10, 400, 4301, 5000, 20_000]) - 1))


def huge_numbers(rng: random.Random) -> str:
    d = _digits(rng)
    return rng.choice([
        f'{{"objects": [{{"name": "a cat", "box": [{d}, 0, 1, 1]}}]}}',
        f"Objects:\n- a cat [{d}, 0.1, 0.5, 0.5]",
        f'{{"score": {d}}}', f"Score: {d}", f"Score: -{d}", d, f"{d}/5", f"[{d}]", f'{{"a cat": [0.1, 0.1, 0.5, {d}]}}',
        f"Objects:\n- a cat [0.{d}, 0.1, 0.5, 0.5]", f"Score: 1e{d[:6]}",
    ])


def surrogates(rng: random.Random) -> str:
    s = chr(rng.randint(0xD800, 0xDFFF))
    return rng.choice([
        f"Objects:\n- a {s} cat {BOX}", f"Reasoning: {s}\nScore: 4", f'{{"objects": [{{"name": "{s}", "box": {BOX}}}]}}',
        f"{s}" * rng.randint(1, 5000), f"Objects:\n- {s} {BOX}\n- a dog [0.5, 0.5, 0.9, 0.9]", f"Score: {s}4",
    ])


def nul_bytes(rng: random.Random) -> str:
    z = "\x00" * rng.randint(1, 50)
    return rng.choice([f"Objects:\n- a{z}cat {BOX}", f"Score:{z}4", z * rng.randint(1, 2000), f'{{"score": 4}}{z}',
                       f"Objects:\n- {z} {BOX}", f"Objects:{z}\n- a cat [0.1,{z}0.1, 0.5, 0.5]"])


def deep_brackets(rng: random.Random) -> str:
    n = _size(rng)
    o, c = rng.choice([("[", "]"), ("{", "}"), ("(", ")"), ('["', '"]'), ('{"a":', "}"), ("[[", "]")])
    body = rng.choice(["", "x", BOX, '{"name": "a cat", "box": ' + BOX + "}", "Score: 4"])
    closed = rng.random() < 0.5
    return o * (n // len(o)) + body + (c * (n // len(o)) if closed else "")


def many_objects(rng: random.Random) -> str:
    n = rng.choice([65, 200, 1000, 3000])
    same = rng.random() < 0.5
    names = ["a cat"] * n if same else [f"object {i}" for i in range(n)]
    if rng.random() < 0.5:
        return "Objects:\n" + "\n".join(f"- {name} {BOX if same else _box(rng)}" for name in names)
    return json.dumps({"objects": [{"name": name, "box": json.loads(BOX if same else _box(rng))} for name in names]})


def _box(rng: random.Random) -> str:
    x, y = round(rng.uniform(0, 0.8), 3), round(rng.uniform(0, 0.8), 3)
    return f"[{x}, {y}, {round(x + rng.uniform(0.05, 0.2), 3)}, {round(y + rng.uniform(0.05, 0.2), 3)}]"


def long_names(rng: random.Random) -> str:
    name = rng.choice(WORDS) * (_size(rng) // 5 + 1)
    return rng.choice([f"Objects:\n- {name} {BOX}", json.dumps({"objects": [{"name": name, "box": json.loads(BOX)}]}),
                       f"Objects: ['{name}{BOX}']"])


def think_tags(rng: random.Random) -> str:
    inner = rng.choice([f"a ghost {BOX}", "Score: 1", '{"score": 2}', "hmm " * rng.randint(1, 20_000), ""])
    answer = rng.choice([f"Objects:\n- a cat {BOX}", "Score: 4", f"- a cat {BOX}\nScore: 5", ""])
    tag = rng.choice(["think", "THINK", "thinking", " think "])
    return rng.choice([
        f"<{tag}>{inner}</{tag}>{answer}", f"<{tag}>{inner}{answer}", f"{inner}</{tag}>{answer}",
        f"{answer}<{tag}>{inner}", f"<{tag}>" * rng.randint(1, 5000), f"<{tag}>{inner}</{tag}>" * rng.randint(1, 50) + answer,
    ])


def other_scales(rng: random.Random) -> str:
    n, m = rng.randint(0, 100), rng.choice([3, 4, 5, 6, 7, 10, 100])
    return rng.choice([f"Score: {n}/{m}", f"**Score:** {n} out of {m}", f"Score: {n}%", f'{{"score": "{n}/{m}"}}',
                       f"Rating: {n}/{m}", f"Reasoning: ok.\nScore: {n} / {m}", f"Overall {n}/{m}", f"Score: {rng.random()}"])


def mixed_scripts(rng: random.Random) -> str:
    objs = "\n".join(f"- {rng.choice(WORDS)} {_box(rng)}" for _ in range(rng.randint(1, 6)))
    head = rng.choice(["Objects:", "Updated objects:", "物体:", "Объекты:", "**Objects**:"])
    return f"Reasoning: {rng.choice(WORDS)}\n{head}\n{objs}\nScore: {rng.choice(['4', '四', '٤', 'four', '４'])}"


def escape_codes(rng: random.Random) -> str:
    esc = rng.choice(["\x1b[31m", "\x1b[2J", "\x1b]0;title\x07", "\x9b2J", "\u202e", "\u2066", "\x07", "\r", "\x1b"])
    return rng.choice([f"Objects:\n- {esc}a cat{esc} {BOX}", f"Score: {esc}4", f"Objects:\n- {esc * 500} {BOX}",
                       f'{{"objects": [{{"name": "{esc}a cat", "box": {BOX}}}]}}'.replace("\x1b", "\\u001b")])


def regex_runs(rng: random.Random) -> str:
    head = rng.choice(["objects", "Objects:", "score", "Score:", "reasoning", "updated", "current", "1. ", "- a cat",
                       "object", "Object 1", "<", "rating", "user", "{", "["])
    run = rng.choice([" ", "\n", "\t", "*", "_", "`", ")", "]", "1. ", "- ", ":", ".", "9", "\\", '"', "'", "#", "<", "(" ])
    tail = rng.choice(["", ":", BOX, "x", " 4", "/5", "</think>"])
    return head + run * _size(rng) + tail


def json_shapes(rng: random.Random) -> str:
    value = rng.choice([
        {"objects": [{"name": 1, "box": [0.1]}]}, {"objects": {"objects": {"objects": []}}}, {"score": None},
        {"score": [4]}, {"score": {"score": 4}}, {"objects": [{"name": "a cat", "box": ["nan", 0, 1, 1]}]},
        {"a cat": [1e308, 1e308, 1e308, 1e308]}, [["a cat", [0.1, 0.1, 0.5, 0.5, 0.6]]], {"objects": "none"},
        {"layout": [{"label": "a cat", "bbox": [10, 10, 50, 50]}]}, {"objects": [{"name": "a cat", "box": [True, 0, 1, 1]}]},
    ])
    text = json.dumps(value)
    return rng.choice([text, f"```json\n{text}\n```", text[: rng.randint(0, len(text))], text * rng.randint(1, 300)])


TOKENS = list("abc xyz0123456789.,-:'\"[](){}\n*#/eEnaifINF\\<>") + [
    "Objects:", "Updated objects:", "Score:", "nan", BOX, "1e999", '{"score": ', '{"objects": [', "<think>", "</think>",
    "\x00", "\ud800", "\x1b[", "猫", "4/10", "out of", "%",
]


def token_noise(rng: random.Random) -> str:
    return "".join(rng.choice(TOKENS) for _ in range(rng.randint(0, rng.choice([80, 2000]))))


FAMILIES = [huge_numbers, surrogates, nul_bytes, deep_brackets, many_objects, long_names, think_tags, other_scales,
            mixed_scripts, escape_codes, regex_runs, json_shapes, token_noise]


def make_case(seed: int, index: int) -> tuple[str, str]:
    rng = random.Random(f"{seed}:{index}")
    family = FAMILIES[index % len(FAMILIES)]
    return family.__name__, family(rng)


def run_case(text: str, store_dir: str) -> dict[str, Any]:
    """One reply the way a run treats it; returns the outcome of each reader and of storage."""
    from mllm_guidance.errors import GuidanceError
    from mllm_guidance.prompts import extract_reasoning, parse_layout, parse_score
    from mllm_guidance.store import RunStore

    out: dict[str, Any] = {}
    slowest = 0.0
    layout = None
    for name, reader in (("layout", parse_layout), ("score", parse_score), ("reasoning", extract_reasoning)):
        started = time.perf_counter()
        try:
            value = reader(text)
            out[name] = "value"
            if name == "layout":
                layout = value
                value.same_as(value)
                value.diff(value).summary()
                out["warnings_chars"] = sum(map(len, value.rule_warnings()))
            error = None
        except GuidanceError as exc:
            out[name], error = "clear", str(exc)
        except Exception as exc:  # noqa: BLE001 - counted
            out[name], error = f"crash {type(exc).__name__}", None
        slowest = max(slowest, time.perf_counter() - started)
        if name != "reasoning":
            try:
                store = RunStore(store_dir)
                store.record_call({"step": name, "reply": text, "error": error,
                                   "parsed": layout.model_dump(mode="json") if layout is not None and name == "layout" else None})
                store.write_json("run.json", {"reply": text, "error": error})
                store.calls()
                store.read_json("run.json")
                os.remove(store.path("calls.jsonl"))
            except Exception as exc:  # noqa: BLE001 - counted
                out[f"store_{name}"] = f"crash {type(exc).__name__}"
    out["slowest"] = slowest
    return out


def worker(seed: int, start: int, stop: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(start, stop):
            family, text = make_case(seed, index)
            result = run_case(text, tmp)
            print(json.dumps({"index": index, "family": family, "chars": len(text), **result}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hang", type=float, default=5.0, help="seconds after which a case counts as a hang")
    ap.add_argument("--worker", nargs=3, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    results: list[dict[str, Any]] = []
    hangs: list[tuple[int, str]] = []
    index = 0
    started = time.perf_counter()
    while index < args.cases:
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", str(args.seed), str(index), str(args.cases)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        first = True
        while index < args.cases:
            # the first case also waits for the worker to import the package
            ready, _, _ = select.select([proc.stdout], [], [], args.hang + (10 if first else 0))
            first = False
            line = proc.stdout.readline() if ready else ""
            if not line:
                if proc.poll() is None:  # stuck on this case: stop it, count it, go on
                    proc.kill()
                    proc.wait()
                    hangs.append((index, make_case(args.seed, index)[0]))
                else:  # the worker died (a crash the interpreter could not catch)
                    results.append({"index": index, "family": make_case(args.seed, index)[0], "layout": "crash worker died",
                                    "score": "crash worker died", "reasoning": "crash worker died", "slowest": 0})
                index += 1
                break
            results.append(json.loads(line))
            index += 1
        else:
            proc.wait()
    _report(results, hangs, args, time.perf_counter() - started)


def _report(results: list[dict[str, Any]], hangs: list[tuple[int, str]], args: argparse.Namespace, seconds: float) -> None:
    probe = subprocess.run([sys.executable, "-P", "-c", "import mllm_guidance; print(mllm_guidance.__file__)"], capture_output=True, text=True)
    print(f"package: {probe.stdout.strip()}   seed {args.seed}   {seconds:.0f} s in all\n")
    calls = Counter()
    crashes = Counter()
    for r in results:
        for reader in ("layout", "score", "reasoning"):
            calls[(reader, r[reader].split()[0])] += 1
            if r[reader].startswith("crash"):
                crashes[(r["family"], reader, r[reader])] += 1
        for key in ("store_layout", "store_score"):
            if key in r:
                crashes[(r["family"], key, r[key])] += 1
    slow = [r for r in results if r["slowest"] > args.hang]
    print(f"cases tried            {args.cases}")
    print(f"cases finished         {len(results)}")
    print(f"layout reads           {calls[('layout', 'value')]} values, {calls[('layout', 'clear')]} clear errors, {calls[('layout', 'crash')]} crashes")
    print(f"score reads            {calls[('score', 'value')]} values, {calls[('score', 'clear')]} clear errors, {calls[('score', 'crash')]} crashes")
    print(f"reasoning reads        {calls[('reasoning', 'value')]} values, {calls[('reasoning', 'crash')]} crashes")
    print(f"storage crashes        {sum(v for k, v in crashes.items() if k[1].startswith('store'))}")
    print(f"cases with a crash     {len({r['index'] for r in results if any(str(v).startswith('crash') for v in r.values())})}")
    print(f"reads over {args.hang:g} s        {len(slow)} finished slowly + {len(hangs)} stopped")
    print(f"slowest finished case  {max((r['slowest'] for r in results), default=0):.3f} s")
    print(f"most warning text      {max((r.get('warnings_chars', 0) for r in results), default=0)} characters")
    print("\nby family: cases, layout values/clear errors, score values/clear errors, crashes")
    for family in sorted({r["family"] for r in results}):
        rows = [r for r in results if r["family"] == family]
        tally = Counter((reader, r[reader].split()[0]) for r in rows for reader in ("layout", "score"))
        crashed = sum(1 for r in rows if any(str(v).startswith("crash") for v in r.values()))
        print(f"  {family:14s} {len(rows):5d}   {tally[('layout', 'value')]:5d}/{tally[('layout', 'clear')]:<5d}"
              f"   {tally[('score', 'value')]:5d}/{tally[('score', 'clear')]:<5d}   {crashed}")
    if crashes:
        print("\ncrashes by family, reader and exception:")
        for (family, reader, what), n in sorted(crashes.items()):
            print(f"  {n:5d}  {family:14s} {reader:13s} {what}")
    if hangs or slow:
        print("\nover the limit by family:")
        for family, n in sorted(Counter([f for _, f in hangs] + [r["family"] for r in slow]).items()):
            print(f"  {n:5d}  {family}")


if __name__ == "__main__":
    main()
