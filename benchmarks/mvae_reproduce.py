"""Times ``mllm-guidance mvae reproduce`` (issue 21's speed goals: table 3.3 x10 within 20 minutes,
any table x3 within 6 minutes, on 2 CPU cores). Prints wall seconds, CPU seconds of this process and its workers
(what the run costs when it has the cores to itself), the machine's load average before and after
(other users' work slows the wall time), and the mean seconds per training.

    python benchmarks/mvae_reproduce.py --table 3.3 --runs 3 --data-dir ../shared/data/mvae [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished worker processes (``--jobs``)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="append", required=True, help="3.1 .. 3.6 (repeatable)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from weighted_mvae.reproduce import load_records, run_table, write_outputs
    from weighted_mvae.tables import get_table

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.jobs} job(s) of {torch.get_num_threads()} thread(s), "
          f"{os.cpu_count()} CPUs, device {args.device}")
    for number in args.table:
        with tempfile.TemporaryDirectory() as tmp:
            load_before = os.getloadavg()
            wall, cpu = time.perf_counter(), _cpu_seconds()
            run_table(number, args.runs, Path(tmp), data_dir=args.data_dir, device=args.device,
                      jobs=args.jobs, threads=args.threads)
            write_outputs(number, args.runs, Path(tmp))
            wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
            records = load_records(Path(tmp), get_table(number))
            per_run = sum(r["seconds"] for r in records) / len(records)
            print(f"table {number} x{args.runs}: {len(records)} trainings, wall {wall:.1f} s, CPU {cpu:.1f} s "
                  f"({cpu / wall:.2f} cores busy), {per_run:.2f} s per training; load average "
                  f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")


if __name__ == "__main__":
    main()
