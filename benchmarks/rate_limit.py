"""The runner against a provider's token limit: with ``--mllm-tpm`` and without, side by side.

A stub of the OpenAI chat API runs in a child process on 127.0.0.1 (so the runner's CPU-seconds
are its own). It counts each request's tokens its own way (text characters / 3, 600 per image,
150 per answer: not the runner's estimate, which must learn the difference), answers after
``--latency`` seconds, and refuses with 429 and a ``Retry-After`` any request that would put more
than ``--tpm`` tokens into the last 60 seconds (the strictest reading of "per minute"). The
benchmark is full mode without self-correct (2 MLLM calls per prompt, one of them with the image)
and a fake generator holding the device ``--render`` seconds.

Three runs: with the budget flag; without it (the stub's ``Retry-After`` honoured by the retry
policy); without it against a stub that sends no ``Retry-After`` (exponential backoff alone: the
retry policy before issue 25). Printed per run: items ok / failed, the stub's 429s, the pace of the tokens the stub accepted (from
the first accepted request to the last) as a share of the budget (goal >= 0.9 with the budget flag,
0 failed items), wall seconds and the runner's CPU-seconds. A run without the flag may beat the
budget's pace over a short run: the stub, like a provider counting a rolling minute, lets a whole
minute's tokens through at once at the start (the budget starts with 5% of a minute and paces at
95%); over a run of many minutes that burst is one minute's worth.

    python benchmarks/rate_limit.py [--prompts 40] [--tpm 60000] [--latency 0.5] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import sys
import tempfile
import threading
import time
import urllib.request
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.throughput import DeviceHolder  # noqa: E402
from mllm_guidance.eval.runner import BenchSpec, run_bench  # noqa: E402


def provider_tokens(body: dict) -> int:
    """The stub's own count: characters / 3 of text, 600 per image, 150 for the answer."""
    chars = images = 0
    for message in body.get("messages", []):
        content = message.get("content")
        for part in content if isinstance(content, list) else [content]:
            if isinstance(part, str):
                chars += len(part)
            elif isinstance(part, dict) and part.get("type") == "image_url":
                images += 1
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                chars += len(part["text"])
    return chars // 3 + 600 * images + 150


def serve_stub(tpm: int, latency: float, retry_after: bool, port_out: multiprocessing.Queue,
               stop: multiprocessing.Event) -> None:
    from tests.stubs import PLANNER_ANSWERS, StubServer, openai_completion, openai_error, step_in

    window: deque[tuple[float, int]] = deque()
    accepted: list[tuple[float, int]] = []
    refused = [0]
    lock = threading.Lock()

    def respond(path: str, body: dict):
        if path.endswith("/stats"):
            with lock:
                return 200, {"accepted": accepted, "refused": refused[0]}
        tokens = provider_tokens(body)
        with lock:
            now = time.monotonic()
            while window and window[0][0] <= now - 60:
                window.popleft()
            used = sum(t for _, t in window)
            if used + tokens > tpm:
                refused[0] += 1
                freed, wait = used + tokens - tpm, 1.0
                for stamp, t in window:  # seconds until enough tokens leave the window
                    freed -= t
                    if freed <= 0:
                        wait = max(0.1, stamp + 60 - now)
                        break
                return (*openai_error(429, "Rate limit reached for tokens per min"),
                        {"retry-after": f"{wait:.2f}"} if retry_after else {})
            window.append((now, tokens))
            accepted.append((now, tokens))
        time.sleep(latency)
        return 200, openai_completion(PLANNER_ANSWERS[step_in(body)], prompt_tokens=tokens - 150, completion_tokens=150)

    with StubServer(respond) as stub:
        port_out.put(stub.url)
        stop.wait()


def one_run(url: str, prompts: int, tpm: int | None, concurrency: int, render: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "prompts.txt"
        data.write_text("\n".join(f"A cat number {i} sits to the left of a dog." for i in range(prompts)) + "\n")
        options = {"base_url": url + "/v1", **({"tpm": tpm} if tpm else {})}
        spec = BenchSpec(dataset=str(data), out=Path(tmp) / "out", mllm="openai:gpt-4o", mllm_options=options,
                         generator=DeviceHolder(render, 256), concurrency=concurrency,
                         config={"self_correct": False, "width": 256, "height": 256})
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        records = asyncio.run(run_bench(spec))
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    return {"ok": sum(r["status"] == "ok" for r in records), "failed": sum(r["status"] != "ok" for r in records),
            "wall": wall, "cpu": (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)}


def stats(url: str) -> dict:
    request = urllib.request.Request(url + "/stats", data=b"{}", headers={"content-type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--tpm", type=int, default=60000, help="The stub's token budget per 60 s.")
    parser.add_argument("--latency", type=float, default=0.5, help="Seconds the stub takes per answer.")
    parser.add_argument("--render", type=float, default=0.05, help="Seconds per fake render.")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    rows = []
    runs = (("--mllm-tpm", args.tpm, True), ("no budget", None, True), ("no budget, no Retry-After", None, False))
    for label, tpm, retry_after in runs:
        ctx = multiprocessing.get_context("spawn")
        port, stop = ctx.Queue(), ctx.Event()
        child = ctx.Process(target=serve_stub, args=(args.tpm, args.latency, retry_after, port, stop), daemon=True)
        child.start()
        try:
            url = port.get(timeout=60)
            run = one_run(url, args.prompts, tpm, args.concurrency, args.render)
            seen = stats(url)
        finally:
            stop.set()
            child.join(10)
        accepted = sorted(seen["accepted"])  # the pace between the first and the last accepted request
        span = accepted[-1][0] - accepted[0][0] if len(accepted) > 1 else float("inf")
        share = sum(n for _, n in accepted[:-1]) / (span / 60) / args.tpm
        rows.append((label, run, seen["refused"], share))
    print(f"{args.prompts} prompts, concurrency {args.concurrency}, stub: {args.tpm} tokens per 60 s, "
          f"{args.latency}s per answer; render {args.render}s")
    print(f"{'run':<26} {'ok':>4} {'failed':>6} {'429s':>5} {'pace of budget':>15} {'wall s':>7} {'runner CPU s':>12}")
    for label, run, refused, share in rows:
        print(f"{label:<26} {run['ok']:>4} {run['failed']:>6} {refused:>5} {share:>15.3f} {run['wall']:>7.1f} {run['cpu']:>12.2f}")


if __name__ == "__main__":
    main()
