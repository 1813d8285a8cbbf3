"""A benchmark run in a child process (killed by the resume test)."""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mllm_guidance.eval.runner import BenchSpec, run_bench  # noqa: E402
from tests.fakes import SlowGenerator, StepChatModel  # noqa: E402

dataset, out = sys.argv[1], sys.argv[2]
spec = BenchSpec(dataset=dataset, out=Path(out), mllm=StepChatModel(delay=0.02), generator=SlowGenerator(0.15),
                 images_per_prompt=2, concurrency=3, config={"self_correct": False})
asyncio.run(run_bench(spec))
