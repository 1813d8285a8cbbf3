"""The step prompts as data: a template file and an example file per step.

A template file ``STEP.txt`` has two parts split by a line ``=== request ===``: the instructions
(static: the same for every call, with the few-shot examples filled in at ``$examples``) and the
request (``$prompt``, and ``$objects`` for self-correct). Rendering puts the static part first, as
a system message, so providers' prompt caching can reuse it across calls.

Examples live in ``STEP.examples.json`` with boxes in the project's one convention (normalized
``[x1, y1, x2, y2]``). A user directory may hold any of these files; each one found replaces the
built-in file, and the set's version id changes with the content, so every run records exactly
which prompts it used.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, ValidationError

from mllm_guidance.errors import ConfigError
from mllm_guidance.textfiles import read_user_text
from mllm_guidance.images import ModelImage
from mllm_guidance.layout import Box, Layout
from mllm_guidance.prompts.steps import STEP_NAMES, STEPS, StepName

#: Name of the built-in set; bump it whenever the built-in files change meaning.
BUILTIN_NAME = "builtin-v1"
_SPLIT = "=== request ==="
_BLOCK = re.compile(r"^=== ([a-z][a-z ]*[a-z]) ===[ \t]*$", re.MULTILINE)


class ExampleObject(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    box: list[float]


class Example(BaseModel):
    """One few-shot example; which fields a step uses is fixed by its ``Step`` (``steps.py``)."""

    model_config = ConfigDict(extra="forbid")
    prompt: str
    objects: list[ExampleObject] | None = None
    current: list[ExampleObject] | None = None
    reasoning: str | None = None
    score: int | None = None
    better: str | None = None
    note: str | None = None
    modes: list[str] | None = None  # the graph modes it is shown in; None: every mode


@dataclass(frozen=True)
class StepTemplate:
    step: StepName
    instructions: str
    request: string.Template
    #: optional request parts (``=== NAME ===`` blocks after the request), added when a run asks
    blocks: dict[str, string.Template] = field(default_factory=dict)
    #: the instructions for modes whose examples differ from the default ``full`` mode's
    by_mode: dict[str, str] = field(default_factory=dict)

    def instructions_for(self, mode: str | None) -> str:
        return self.by_mode.get(mode or "full", self.instructions)


@dataclass(frozen=True)
class TemplateSet:
    """The four step templates of one run, with the id that names their exact content."""

    steps: dict[str, StepTemplate]
    version: str
    source: str

    def messages(
        self,
        step: StepName,
        prompt: str,
        *,
        objects: Layout | None = None,
        image: ModelImage | None = None,
        images: list[ModelImage] | None = None,
        mode: str | None = None,
        extra: dict[str, dict[str, str]] | None = None,
    ) -> list[BaseMessage]:
        """Chat messages for one call: static instructions (with the examples of ``mode``), then
        the request, each optional block named in ``extra`` filled with its values, then the image."""
        tpl = self.steps[step]
        values = {"prompt": prompt, "objects": objects.to_lines() if objects else "(none)"}
        parts = [tpl.request.safe_substitute(values).strip()]
        for name, block_values in (extra or {}).items():
            if name not in tpl.blocks:
                raise ConfigError(f"{step}.txt has no '=== {name} ===' block, which this run's settings need")
            parts.append(tpl.blocks[name].safe_substitute({**values, **block_values}).strip())
        request = "\n".join(p for p in parts if p)
        content: list[dict[str, Any]] = [{"type": "text", "text": request}]
        for attached in ([image] if image is not None else []) + list(images or []):
            content.append(
                {
                    "type": "image",
                    "base64": base64.b64encode(attached.data).decode("ascii"),
                    "mime_type": attached.mime_type,
                }
            )
        return [SystemMessage(content=tpl.instructions_for(mode)), HumanMessage(content=content)]

    def require(self, step: StepName, blocks: set[str], why: str) -> None:
        """Fail before a run starts when its settings need blocks this set's template lacks."""
        missing = sorted(blocks - set(self.steps[step].blocks))
        if missing:
            names = ", ".join(f"'=== {m} ==='" for m in missing)
            raise ConfigError(f"the {step} template ({self.source}) has no {names} block, which {why} needs; add it "
                              f"(see: mllm-guidance templates show {step}) or change that setting")

    def block(self, step: StepName, name: str, **values: str) -> str:
        """One optional block of a step as text (e.g. align's follow-up after an empty answer)."""
        tpl = self.steps[step]
        if name not in tpl.blocks:
            raise ConfigError(f"{step}.txt has no '=== {name} ===' block, which this run's settings need")
        return tpl.blocks[name].safe_substitute(values).strip()


def load_templates(directory: str | Path | None = None) -> TemplateSet:
    """The built-in set, with any file found in ``directory`` replacing its built-in twin.

    Sets are cached per process; a user directory's entry is keyed on its files' modification
    times, so an edited template is picked up by the next run."""
    user = Path(directory) if directory is not None else None
    if user is not None and not user.is_dir():
        raise ConfigError(f"template directory {user} does not exist or is not a directory")
    stamp = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in user.iterdir() if p.is_file())) if user else ()
    return _load_templates(str(user) if user else None, stamp)


@functools.lru_cache(maxsize=32)
def _load_templates(directory: str | None, stamp: tuple[tuple[str, int], ...]) -> TemplateSet:
    user = Path(directory) if directory is not None else None
    builtin = resources.files("mllm_guidance.prompts").joinpath("data")
    digest = hashlib.sha256()
    overridden: list[str] = []
    steps: dict[str, StepTemplate] = {}
    for step in STEP_NAMES:
        texts = {}
        for filename in (f"{step}.txt", f"{step}.examples.json"):
            if user is not None and ((user / filename).exists() or (user / filename).is_symlink()):
                # read_user_text refuses what is not a regular file (a FIFO, /dev/zero) in one line
                texts[filename] = read_user_text(user / filename, "template")
                overridden.append(filename)
            else:
                texts[filename] = builtin.joinpath(filename).read_text(encoding="utf-8")
            digest.update(filename.encode() + b"\0" + texts[filename].encode() + b"\0")
        examples = _load_examples(step, texts[f"{step}.examples.json"], f"{step}.examples.json")
        steps[step] = _build_step(step, texts[f"{step}.txt"], examples)
    name = "custom" if overridden else BUILTIN_NAME
    source = f"{user} ({', '.join(overridden)})" if overridden else "builtin"
    return TemplateSet(steps=steps, version=f"{name}+{digest.hexdigest()[:12]}", source=source)


def export_templates(directory: str | Path) -> list[Path]:
    """Copy the built-in files into ``directory`` so a user can edit them (never overwrites)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    builtin = resources.files("mllm_guidance.prompts").joinpath("data")
    written = []
    for step in STEP_NAMES:
        for filename in (f"{step}.txt", f"{step}.examples.json"):
            path = target / filename
            if path.exists():
                raise ConfigError(f"{path} already exists; export into an empty directory")
            path.write_text(builtin.joinpath(filename).read_text(encoding="utf-8"), "utf-8")
            written.append(path)
    return written


# -- internals --------------------------------------------------------------------------------


def _fields(template: string.Template) -> set[str]:
    used = {m.group("named") or m.group("braced") for m in template.pattern.finditer(template.template)}
    used.discard(None)
    return used  # type: ignore[return-value]


def _build_step(step: StepName, text: str, examples: list[Example]) -> StepTemplate:
    if _SPLIT not in text:
        raise ConfigError(f"{step}.txt: the line '{_SPLIT}' that starts the request part is missing")
    head, _, tail = text.partition(_SPLIT)
    pieces = _BLOCK.split(tail)
    request = string.Template(pieces[0].strip("\n"))
    blocks: dict[str, string.Template] = {}
    allowed = STEPS[step].optional_blocks
    for name, body in zip(pieces[1::2], pieces[2::2], strict=True):
        if name not in allowed:
            raise ConfigError(f"{step}.txt: unknown block '=== {name} ==='; this step takes {sorted(allowed) or 'none'}")
        block = string.Template(body.strip("\n"))
        unknown = _fields(block) - allowed[name] - STEPS[step].request_fields
        if unknown:
            raise ConfigError(f"{step}.txt: the '{name}' block may use {sorted(allowed[name])}; unknown {sorted(unknown)}")
        blocks[name] = block
    used = _fields(request)
    needs = STEPS[step].request_fields
    missing = needs - used
    unknown = used - needs
    if missing or unknown:
        raise ConfigError(
            f"{step}.txt: the request part must use {sorted(needs)}"
            + (f"; missing {sorted(missing)}" if missing else "")
            + (f"; unknown {sorted(unknown)}" if unknown else "")
        )
    def instructions(mode: str) -> str:
        rendered = "\n\n".join(STEPS[step].render_example(ex) for ex in examples if ex.modes is None or mode in ex.modes)
        try:
            return string.Template(head.strip()).substitute(examples=rendered)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"{step}.txt: only $examples may appear in the instructions ({exc})") from exc

    modes = sorted({m for ex in examples for m in (ex.modes or [])})
    return StepTemplate(step=step, instructions=instructions("full"), request=request, blocks=blocks,
                        by_mode={m: instructions(m) for m in modes})


def _load_examples(step: StepName, text: str, filename: str) -> list[Example]:
    try:
        raw = json.loads(text)
        examples = [Example.model_validate(item) for item in raw]
    except (json.JSONDecodeError, TypeError, ValidationError) as exc:
        raise ConfigError(f"{filename}: not a list of examples ({exc})") from exc
    for i, ex in enumerate(examples):
        for name in STEPS[step].example_fields:
            if getattr(ex, name) is None:
                raise ConfigError(f"{filename}: example {i} needs '{name}'")
        for obj in (ex.objects or []) + (ex.current or []):
            try:
                Box.of(obj.box)
            except ValueError as exc:
                raise ConfigError(
                    f"{filename}: example {i}, {obj.name!r}: boxes must be normalized "
                    f"[x1, y1, x2, y2] ({exc})"
                ) from exc
    return examples
