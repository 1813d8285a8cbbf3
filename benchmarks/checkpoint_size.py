"""How a run's checkpoint file grows with the rounds: bytes per round at K = 5, 10, 20, 40.

A fake MLLM that never scores the image good (2/5, with a reasoning of realistic length) and moves
one box at every align, so a run uses all K rounds; the sketch generator at 64 px. Prints, per K,
the checkpoints stored, the checkpoint file's size and its size per round. Per-round growth that
stays flat as K grows means the file is linear in the rounds; growth with K means every checkpoint
stores the whole history again.

    python benchmarks/checkpoint_size.py [--k 5 10 20 40]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mllm_guidance import guide  # noqa: E402
from mllm_guidance.prompts.steps import STEP_KEY  # noqa: E402

PLACE = "- a man sitting [0.1, 0.5, 0.45, 0.95]\n- a tree [0.35, 0.05, 0.95, 0.9]\n- a bird [{x:.3f}, 0.15, {x2:.3f}, 0.3]"
REASONING = ("The man sits at the foot of the tree, but the bird is drawn beside the trunk rather than among the "
             "branches, and its size does not match the distance; the tree's crown is cut by the top edge. ") * 3


class DriftingModel(BaseChatModel):
    """Never satisfied: scores 2 and moves the bird a little at every align."""

    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "drifting-fake"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        step = (run_manager.metadata or {}).get(STEP_KEY) if run_manager else None
        self.calls += 1
        x = 0.5 + (self.calls % 40) * 0.005
        layout = PLACE.format(x=x, x2=x + 0.15)
        text = {
            "place": "Objects:\n" + layout,
            "self_correct": "Reasoning: fine.\nUpdated objects:\n" + layout,
            "reason": f"Reasoning: {REASONING}\nScore: 2",
            "align": f"Reasoning: move the bird into the crown.\nUpdated objects:\n{layout}",
        }[step]
        message = AIMessage(content=text, usage_metadata={"input_tokens": 900, "output_tokens": 120, "total_tokens": 1020})
        return ChatResult(generations=[ChatGeneration(message=message)])


def measure(k: int, root: Path) -> dict[str, float]:
    run_dir = root / f"k{k}"
    result = guide("A man is sitting under a tree while a bird is in the tree.", mllm=DriftingModel(), generator="sketch",
                   config={"max_align_rounds": k, "is_good": 5, "width": 64, "height": 64}, run_dir=run_dir)
    db = run_dir / "checkpoints.sqlite"
    with sqlite3.connect(db) as conn:
        count = conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0]
    size = sum(p.stat().st_size for p in run_dir.glob("checkpoints.sqlite*"))
    return {"k": k, "rounds": len(result.rounds), "checkpoints": count, "kib": size / 1024,
            "kib_per_round": size / 1024 / len(result.rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[5, 10, 20, 40])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(k, Path(tmp)) for k in args.k]
    print(f"{'K':>4} {'rounds':>6} {'checkpoints':>11} {'file KiB':>9} {'KiB/round':>9}")
    for r in rows:
        print(f"{r['k']:>4} {r['rounds']:>6} {r['checkpoints']:>11} {r['kib']:>9.1f} {r['kib_per_round']:>9.1f}")
    first, last = rows[0], rows[-1]
    print(f"per-round size at K={last['k']} / at K={first['k']}: {last['kib_per_round'] / first['kib_per_round']:.2f}"
          " (1.0: linear in the rounds)")


if __name__ == "__main__":
    main()
