"""Shared fixtures: a run context on a temporary directory with a recording chat model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from langgraph.runtime import Runtime

from mllm_guidance.context import Context
from mllm_guidance.prompts.templates import load_templates
from mllm_guidance.store import RunStore
from tests.fakes import CountingGenerator, RecordingChatModel

# Tests never reach a model hub: a mistake shows up as an error, not a download attempt.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

PROMPT = "A man is sitting under a tree while a bird is in the tree."


class Events(list):
    def __call__(self, event: dict[str, Any]) -> None:
        self.append(event)


def make_context(tmp_path: Path, replies: dict[str, list[Any]], generator: Any = None, config: Any = None) -> Context:
    from mllm_guidance.config import make_config

    return Context(
        mllm=RecordingChatModel(replies=replies),
        generator=generator or CountingGenerator(),
        store=RunStore(tmp_path / "run"),
        templates=load_templates(),
        config=make_config(config),
    )


def make_runtime(ctx: Context) -> Runtime:
    return Runtime(context=ctx, stream_writer=Events())


@pytest.fixture
def prompt() -> str:
    return PROMPT
