"""One progress renderer for the terminal, for a single run (``generate``, ``plan``) and for a
benchmark (``bench``): finished steps as lines, and a live status line while waiting (only on a
terminal; piped output gets the lines alone). Every line is shown with its secrets masked."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from mllm_guidance.prompts.steps import STEPS
from mllm_guidance.redact import redact_text


class Progress:
    """Feed it the graph's events (``__call__``) or a benchmark's records (``record``)."""

    def __init__(self, quiet: bool = False, console: Console | None = None, total: int = 0) -> None:
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.quiet = quiet
        self.live = self.console.is_terminal
        self._status: Any = None
        self._bar: Any = None  # a benchmark's rich progress bar, on a terminal
        self._since = time.perf_counter()
        #: finished steps seen: a failure after the first one is a run that ended without its image
        self.steps = 0
        # benchmark counters
        self.total, self.done, self.failed = total, 0, 0
        self.scores: list[float] = []
        #: the runner's line on what binds the benchmark (``eval.load``), shown with each progress line
        self.load: Any = None

    # -- lines and the status line ------------------------------------------------------------

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(redact_text(text), markup=False, highlight=False, soft_wrap=True)

    def show(self, text: str) -> None:
        """A transient status line (a spinner on a terminal; nothing when piped)."""
        if self.quiet or not self.live or self._bar is not None:  # one live display at a time
            return
        text = redact_text(text)
        if self._status is None:
            self._status = self.console.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # -- a run's events -----------------------------------------------------------------------

    def __call__(self, event: dict[str, Any]) -> None:
        kind, step, k = event.get("event"), str(event.get("step", "")), event.get("round")
        if kind == "generating":
            self._since = time.perf_counter()
            self.show(f"round {k} · generating")
        elif kind == "denoising":
            elapsed = time.perf_counter() - self._since
            self.show(f"round {k} · generating · step {event.get('step_index')}/{event.get('steps')} · {elapsed:.0f}s")
        elif kind == "mllm_call":
            if not event.get("ok"):
                self.say(f"{step:<13}round {k} · unreadable answer (attempt {event.get('attempt')}): {event.get('error')}")
            else:
                self.show(f"round {k} · {step} answered")
        elif kind == "mllm_retry":
            self.say(f"{step:<13}round {k} · {event.get('kind')}, retrying (try {event.get('try')})")
        elif kind == "step":
            self.steps += 1
            if step == "generate":
                detail = f"image in {event.get('seconds')}s"
            elif step in STEPS:
                detail = STEPS[step].describe(event)
            else:
                detail = ""
            self.say(f"{step:<13}round {k} · {detail}")
        elif kind == "done":
            self.close()
            self.say(f"{'finish':<13}best round {k} · stop: {event.get('stop')}")

    # -- a benchmark's records ----------------------------------------------------------------

    def record(self, record: dict[str, Any]) -> None:
        """One finished benchmark item: done/total, images per second, ETA, mean score."""
        self.done += 1
        self.failed += record.get("status") != "ok"
        if record.get("final_score") is not None:
            self.scores.append(record["final_score"])
        if self.quiet:
            return
        elapsed = time.perf_counter() - self._since
        rate = self.done / elapsed if elapsed > 0 else 0.0
        mean = f"{sum(self.scores) / len(self.scores):.2f}" if self.scores else "-"
        stats = f"{rate:.2f} img/s · mean score {mean} · failed {self.failed}"
        if self.live:
            self._advance(stats if self.load is None else f"{stats} · {self.load()}")
            return
        if self.done < self.total and self.done % max(1, self.total // 20):
            return  # piped: a line every 5%, not one per image
        if self.load is not None:  # what binds the run, and the ETA it implies
            self.say(f"{self.done}/{self.total} ({self.done / max(1, self.total):.0%}) · {stats} · {self.load()}")
            return
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        self.say(f"{self.done}/{self.total} ({self.done / max(1, self.total):.0%}) · {stats} · ETA {eta:,.0f}s")

    def _advance(self, stats: str) -> None:
        """The terminal's progress bar (rich's: done/total, bar, elapsed and remaining time)."""
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        if self._bar is None:
            if self._status is not None:
                self._status.stop()
                self._status = None
            self._bar = Bar(TextColumn("bench"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
                            console=self.console)
            self._bar.start()
            self._task = self._bar.add_task("bench", total=self.total, stats="")
        self._bar.update(self._task, completed=self.done, stats=redact_text(stats))
        if self.done >= self.total:
            self.close()
