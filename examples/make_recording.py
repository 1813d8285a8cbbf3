"""Rebuild ``examples/recordings/man-under-tree.json``, the recording the README's quick start
replays with ``--mllm replay:...``.

The answers below are HAND-WRITTEN in the style of real MLLM answers (one of them in the thesis's
noisy list format) to show the whole loop offline; they are not output of GPT-4o or any model.
The script runs the real graph on them with the sketch generator and keeps the run.json.

    python examples/make_recording.py
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from mllm_guidance import guide
from mllm_guidance.backends.replay import STEP_KEY

PROMPT = "A man is sitting under a tree while a bird is in the tree."
ANSWERS = {
    "place": [
        "Objects: ['a man sitting[0.08, 0.52, 0.38, 0.96]', 'a tree[0.45, 0.04, 0.96, 0.92]', "
        "'a bird[0.12, 0.08, 0.3, 0.22]']",
    ],
    "self_correct": [
        "Reasoning: The man must sit under the tree, so move him to the foot of the trunk; the bird "
        "must be in the tree, so move it onto a branch at the edge of the crown.\n"
        "Updated objects:\n- a man sitting [0.24, 0.56, 0.54, 0.96]\n- a tree [0.45, 0.04, 0.96, 0.84]\n"
        "- a bird [0.37, 0.2, 0.51, 0.32]",
        "Reasoning: The man sits at the foot of the tree and the bird is on a branch of its crown; "
        "the layout already matches the prompt.\nUpdated objects:\n- a man sitting [0.24, 0.56, 0.54, 0.96]\n"
        "- a tree [0.45, 0.04, 0.96, 0.84]\n- a bird [0.37, 0.2, 0.51, 0.32]",
    ],
    "reason": [
        "Reasoning: A tree and a man are visible, but the man stands beside the trunk and no bird "
        "is in the tree.\nScore: 3",
        "Reasoning: The man sits under the tree; a bird is present but flies beside the crown.\nScore: 4",
        "Reasoning: The man sits under the tree and a bird perches on a branch.\nScore: 5",
    ],
    "align": [
        "Reasoning: The man should clearly sit on the ground at the foot of the trunk and the bird "
        "must be in the crown; let the man overlap the trunk a little and put the bird on a branch.\n"
        "Updated objects:\n- a man sitting on the ground [0.26, 0.6, 0.54, 0.96]\n"
        "- a tree [0.45, 0.04, 0.96, 0.84]\n- a small bird [0.36, 0.24, 0.5, 0.36]",
        "Reasoning: The bird flies beside the crown; it should perch on a branch, so describe it "
        "perching and move its box onto the branch.\n"
        "Updated objects:\n- a man sitting on the ground [0.26, 0.6, 0.54, 0.96]\n"
        "- a tree [0.45, 0.04, 0.96, 0.84]\n- a small bird perched on a branch [0.35, 0.28, 0.49, 0.4]",
    ],
}


class ScriptedChatModel(BaseChatModel):
    """Answers each step from ANSWERS in order."""

    answers: dict[str, list[str]]
    used: dict[str, int] = {}

    @property
    def _llm_type(self) -> str:
        return "hand-written"

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        step = run_manager.metadata[STEP_KEY]
        i = self.used.get(step, 0)
        self.used[step] = i + 1
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.answers[step][i]))])


def stable(record: dict[str, Any]) -> dict[str, Any]:
    """The run record without what changes from one run to the next (ids, clock times, the
    machine's package versions), so that running this script twice writes the same bytes."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (0.0 if k == "seconds" or k.endswith("_seconds") else walk(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    out = walk(record)
    out.update(thread_id="man-under-tree", created="2025-06-01T00:00:00+00:00",
               versions={"mllm-guidance": record["versions"].get("mllm-guidance")})
    for n, call in enumerate(out["calls"]):
        call["id"] = f"call-{n:02d}"
    return out


def main(target: Path | None = None) -> Path:
    target = target or Path(__file__).parent / "recordings" / "man-under-tree.json"
    with tempfile.TemporaryDirectory() as tmp:
        result = guide(PROMPT, mllm=ScriptedChatModel(answers=ANSWERS, used={}), generator="sketch",
                       config={"seed": 0}, run_dir=Path(tmp) / "run", checkpoint=False)
        record = json.loads((Path(result.run_dir) / "run.json").read_text(encoding="utf-8"))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(stable(record), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {target} (best round {result.best_round}, score {result.score})")
    return target


if __name__ == "__main__":
    main()
