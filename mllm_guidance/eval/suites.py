"""Benchmark suites: one name picks a published benchmark's prompts, images per prompt, scorers and table.

| suite | prompts | images / prompt | scorers | table |
|---|---|---|---|---|
| ``geneval`` | GenEval's 553 (``data/geneval``) | 4 (GenEval's protocol) | ``geneval`` | the six tasks and Overall, as its leaderboard |
| ``genai-bench`` | GenAI-Bench-527 (``data/genai-bench``) | 1 (the VQAScore paper scores one image per prompt and model) | ``vqascore`` (CLIP-FlanT5-XXL) | mean VQAScore |
| ``t2i-compbench`` | one T2I-CompBench validation category (``--dataset``: complex by default) | 1 (the thesis) | ``mllm`` (T2I-CompBench's MLLM evaluation) | the summary |
| ``rls-300`` | the thesis's RLS-300 | 1 (the thesis) | ``mllm`` judged as complex | the summary |
| ``dpg-bench`` | DPG-Bench's 1,065 (``data/dpg-bench``) | 4 (the reference scores a 2 x 2 grid per prompt) | ``dpg-bench`` (mPLUG-large through ModelScope, or BLIP) | the score and its L1 categories |

Not here: GenAI-Bench-1600 with its skill tags (kept on the Hugging Face hub, not in a repository).
"""

from __future__ import annotations

from dataclasses import dataclass

from mllm_guidance.errors import InputError


@dataclass(frozen=True)
class Suite:
    name: str
    dataset: str
    images_per_prompt: int
    scorers: tuple[str, ...]
    datasets: tuple[str, ...] = ()  # the datasets --dataset may pick instead (T2I-CompBench's categories)


SUITES = {
    "geneval": Suite("geneval", "geneval", 4, ("geneval",)),
    "genai-bench": Suite("genai-bench", "genai-bench", 1, ("vqascore",)),
    "t2i-compbench": Suite("t2i-compbench", "complex", 1, ("mllm",), ("spatial", "3d-spatial", "non-spatial", "complex")),
    "rls-300": Suite("rls-300", "rls300", 1, ("mllm",)),
    "dpg-bench": Suite("dpg-bench", "dpg-bench", 4, ("dpg-bench",)),
}


def resolve_suite(name: str, dataset: str | None, images_per_prompt: int | None, scorers: list[str]) -> tuple[str, int, list[str]]:
    """(dataset, images per prompt, scorers) of a suite; an explicit --images-per-prompt or extra
    --scorer is kept (and recorded like any run), a dataset outside the suite is refused."""
    suite = SUITES.get(name)
    if suite is None:
        raise InputError(f"unknown suite {name!r}; available: {', '.join(SUITES)}")
    if dataset is not None and dataset not in (suite.dataset, *suite.datasets):
        allowed = ", ".join(suite.datasets) if suite.datasets else suite.dataset
        raise InputError(f"--suite {name} runs {allowed}; drop --dataset {dataset} or run without --suite")
    return (dataset or suite.dataset, images_per_prompt or suite.images_per_prompt,
            list(suite.scorers) + [s for s in scorers if s not in suite.scorers])
