"""``replay:PATH``: answer from a recorded run instead of a live MLLM.

Re-runs a recorded session at no MLLM cost, for instance with another generator, or offline.
PATH is a ``run.json`` or a run directory. Answers are replayed per step in the order they were
recorded (failed answers and their retries included), so the run takes the same path as the
recording. The run fails with a ``ReplayError`` when the prompt differs from the recording's, or
when a step asks for more answers than were recorded.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr

from mllm_guidance.errors import InputError, ReplayError
from mllm_guidance.prompts.steps import STEP_KEY
from mllm_guidance.textfiles import read_user_text


def load_recording(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = p / "run.json"
    if not p.exists() and not p.is_symlink():
        raise ReplayError(f"no recording at {p}; give a run.json or a run directory")
    try:
        data = json.loads(read_user_text(p, "recording"))
    except InputError as exc:  # missing, not a regular file, too large, unreadable, not UTF-8
        raise ReplayError(str(exc)) from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ReplayError(f"{p} is not valid JSON ({str(exc)[:200] or 'nested too deep'})") from None
    if not isinstance(data, dict) or not isinstance(data.get("calls"), list) or "prompt" not in data:
        raise ReplayError(f"{p} is not an mllm-guidance run.json (it needs 'prompt' and 'calls')")
    return {**data, "_path": str(p)}


class ReplayChatModel(BaseChatModel):
    """A chat model that plays back the answers of a recorded run."""

    path: str
    prompt: str
    answers: dict[str, list[dict[str, Any]]]
    _used: dict[str, int] = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def from_path(cls, path: str | Path) -> ReplayChatModel:
        data = load_recording(path)
        answers: dict[str, list[dict[str, Any]]] = {}
        for call in data["calls"]:
            answers.setdefault(str(call.get("step")), []).append(call)
        return cls(path=data["_path"], prompt=str(data["prompt"]), answers=answers)

    def skip_used(self, used_calls: list[dict[str, Any]]) -> None:
        """Start after the answers a resumed run already consumed (its committed calls)."""
        with self._lock:
            for call in used_calls:
                step = str(call.get("step"))
                self._used[step] = self._used.get(step, 0) + 1

    @property
    def _llm_type(self) -> str:
        return "replay"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"path": self.path}

    def bind_tools(self, tools: Any, **kwargs: Any) -> ReplayChatModel:  # type: ignore[override]
        """Structured-output runs are replayed from their recorded tool calls."""
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        step = (run_manager.metadata or {}).get(STEP_KEY) if run_manager else None
        if step is None:
            raise ReplayError("a replay model only answers mllm-guidance steps (no step in the call)")
        if not any(self.prompt in _text(m) for m in messages):
            raise ReplayError(
                f"the recording {self.path} is for the prompt {self.prompt!r}; "
                "replay it with that prompt"
            )
        with self._lock:
            used = self._used.get(step, 0)
            recorded = self.answers.get(step, [])
            if used >= len(recorded):
                raise ReplayError(
                    f"the recording {self.path} has no more '{step}' answers (it holds "
                    f"{len(recorded)}); this run asks for more rounds than were recorded"
                )
            self._used[step] = used + 1
        call = recorded[used]
        message = AIMessage(
            content=str(call.get("reply") or ""),
            tool_calls=[
                {"name": tc["name"], "args": tc.get("args", {}), "id": tc.get("id") or f"replay-{i}"}
                for i, tc in enumerate(call.get("tool_calls") or [])
            ],
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
