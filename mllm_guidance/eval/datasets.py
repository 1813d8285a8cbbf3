"""Benchmark prompt sets: RLS-300, T2I-CompBench's validation splits, GenEval's 553 prompts,
GenAI-Bench-527 and DPG-Bench's 1,065 ship with the package (each with its license and a NOTICE.md naming its source);
users add their own as a text file (one prompt a line), JSONL or CSV with a ``prompt`` column.

T2I-CompBench's and GenEval's prompt lists are MIT-licensed, GenAI-Bench's and DPG-Bench's
Apache-2.0 (``data/*/LICENSE.txt``).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mllm_guidance.errors import InputError
from mllm_guidance.textfiles import read_user_text

BUILTIN = {
    "rls300": ("rls300.txt", "RLS-300: 300 real-life scenes, 3-4 objects and 1-2 relations each (thesis Appendix B)"),
    "spatial": ("t2i-compbench/spatial_val.txt", "T2I-CompBench spatial (validation)"),
    "3d-spatial": ("t2i-compbench/3d_spatial_val.txt", "T2I-CompBench 3d-spatial (validation)"),
    "non-spatial": ("t2i-compbench/non_spatial_val.txt", "T2I-CompBench non-spatial (validation)"),
    "complex": ("t2i-compbench/complex_val.txt", "T2I-CompBench complex (validation)"),
    "geneval": ("geneval/evaluation_metadata.jsonl", "GenEval: 553 prompts, 6 tasks (djghosh13/geneval)"),
    "genai-bench": ("genai-bench/genai_image_527.txt", "GenAI-Bench-527: the VQAScore paper's prompts (linzhiqiu/t2v_metrics)"),
    "dpg-bench": ("dpg-bench/prompts.jsonl", "DPG-Bench: 1,065 dense prompts (TencentQQGYLab/ELLA), ids kept"),
}
ALIASES = {"3d_spatial": "3d-spatial", "non_spatial": "non-spatial", "rls-300": "rls300", "genai_bench": "genai-bench",
           "dpg_bench": "dpg-bench"}
#: The T2I-CompBench judge category of each built-in dataset; RLS-300 is judged as complex
#: (thesis 6.4.1), and so is a user's dataset unless told otherwise.
CATEGORIES = {"rls300": "complex", "spatial": "spatial", "3d-spatial": "3d-spatial", "non-spatial": "non-spatial", "complex": "complex"}
DEFAULT_CATEGORY = "complex"


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str


def load_dataset(name_or_path: str) -> tuple[str, list[Prompt]]:
    """(dataset name, prompts) for a built-in name or a file path."""
    name = ALIASES.get(name_or_path, name_or_path)
    if name in BUILTIN:
        text = resources.files("mllm_guidance.eval").joinpath("data", BUILTIN[name][0]).read_text(encoding="utf-8")
        if BUILTIN[name][0].endswith(".jsonl"):  # prompts with metadata: the prompt field of each line
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            if all("id" in row for row in rows):  # the benchmark's own ids (DPG-Bench: its scorer's keys)
                return name, [Prompt(id=str(row["id"]), text=row["prompt"]) for row in rows]
            return name, _numbered(name, [row["prompt"] for row in rows])
        return name, _numbered(name, text.splitlines())
    path = Path(name_or_path)
    if not path.exists() and not path.is_symlink():
        raise InputError(f"unknown dataset {name_or_path!r}: use one of {', '.join(BUILTIN)} or a file "
                         "(.txt one prompt a line, .jsonl or .csv with a 'prompt' field)")
    return path.stem, _from_file(path)


def dataset_category(name_or_path: str) -> str | None:
    """The judge category of a built-in dataset name; None for a user's file."""
    name = ALIASES.get(name_or_path, name_or_path)
    return CATEGORIES.get(name) if name in BUILTIN else None


def list_datasets() -> list[tuple[str, int, str]]:
    return [(name, len(load_dataset(name)[1]), about) for name, (_, about) in BUILTIN.items()]


def _numbered(name: str, lines: list[str]) -> list[Prompt]:
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise InputError(f"dataset {name!r} has no prompts")
    width = len(str(len(prompts)))
    return [Prompt(id=f"{name}-{i:0{width}d}", text=p) for i, p in enumerate(prompts)]


def _from_file(path: Path) -> list[Prompt]:
    text = read_user_text(path, "dataset")
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except RecursionError:
                raise InputError(f"{path}:{n}: JSON nested too deep to read") from None
            except ValueError as exc:  # not JSON, or an integer past Python's digit limit
                raise InputError(f"{path}:{n}: not usable JSON ({str(exc)[:160]})") from None
            if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
                raise InputError(f"{path}:{n}: each line needs a 'prompt' string")
            rows.append(item)
        return [Prompt(id=str(r.get("id", f"{path.stem}-{i}")), text=r["prompt"].strip()) for i, r in enumerate(rows)]
    if path.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        try:
            if not reader.fieldnames or "prompt" not in reader.fieldnames:
                raise InputError(f"{path}: a CSV dataset needs a 'prompt' column")
            rows = [r for r in reader if (r.get("prompt") or "").strip()]
        except csv.Error as exc:  # a field over the csv module's limit (131,072 characters), a stray NUL
            raise InputError(f"{path}:{reader.line_num + 1}: not usable CSV ({exc})") from None  # line_num: lines done
        return [Prompt(id=str(r.get("id") or f"{path.stem}-{i}"), text=r["prompt"].strip()) for i, r in enumerate(rows)]
    return _numbered(path.stem, text.splitlines())
