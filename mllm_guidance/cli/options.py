"""Command-line options made from the settings' own field definitions.

The method's knobs (``GuidanceConfig``) and the MLLM options (``MllmOptions``) declare their
defaults, limits and help once, as pydantic fields; the flags below only name them. A value the
field refuses becomes one line that names the flag.
"""

from __future__ import annotations

import enum
import functools
import inspect
import json
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel, ValidationError

from mllm_guidance.backends.mllm_options import MllmOptions
from mllm_guidance.config import GuidanceConfig
from mllm_guidance.run_settings import RunSettings
from mllm_guidance.errors import InputError, first_problem

#: GuidanceConfig fields the command line sets, by flag.
CONFIG_FLAGS: dict[str, tuple[str, ...]] = {
    "mode": ("--mode",),
    "max_align_rounds": ("-k", "--max-rounds"),
    "max_correct_rounds": ("--correct-rounds",),
    "is_good": ("--good",),
    "align_context": ("--align-context",),
    "align_empty": ("--align-empty",),
    "seed": ("--seed",),
    "seed_policy": ("--seed-policy",),
    "steps": ("--steps",),
    "guidance_scale": ("--guidance-scale",),
    "negative_prompt": ("--negative-prompt",),
    "parse_retries": ("--parse-retries",),
    "layout_tolerance": ("--layout-tolerance",),
    "repair": ("--repair",),
    "repair_margin": ("--repair-margin",),
    "repair_max_share": ("--repair-max-share",),
    "repair_base": ("--repair-base",),
    "candidates": ("--candidates",),
    "verifier": ("--verifier",),
    "verifier_model": ("--verifier-model",),
    "judge_mode": ("--judge-mode",),
}
#: Config fields every command that asks an MLLM shares (plan, generate, bench, mcp).
SHARED_CONFIG_FLAGS = ("parse_retries", "layout_tolerance")
#: RunSettings fields, by flag: every command that asks an MLLM takes them (with --structured,
#: --templates and --prices, which set the other RunSettings fields).
RUN_FLAGS: dict[str, tuple[str, ...]] = {
    "mllm_image_side": ("--mllm-image-side",),
    "mllm_image_format": ("--mllm-image-format",),
    "round_format": ("--round-format",),
}
#: The options of the method beyond the thesis (issue 22): every command that runs the loop takes them.
LOOP_OPTION_FLAGS = ("repair", "repair_margin", "repair_max_share", "repair_base", "candidates", "verifier",
                     "verifier_model", "judge_mode")
#: MllmOptions fields, by flag.
MLLM_FLAGS: dict[str, tuple[str, ...]] = {
    "base_url": ("--mllm-base-url",),
    "timeout": ("--mllm-timeout",),
    "retries": ("--mllm-retries",),
    "rpm": ("--mllm-rpm",),
    "tpm": ("--mllm-tpm",),
    "device": ("--mllm-device",),
    "dtype": ("--mllm-dtype",),
}
#: Generator constructor keywords every diffusers backend takes, by flag: (keyword, flags, help).
GENERATOR_FLAGS: list[tuple[str, tuple[str, ...], type, str]] = [
    ("model", ("--model-path",), str, "The generator's weights: a hub id or a local directory."),
    ("device", ("--generator-device",), str, "cuda, mps or cpu (default: automatic)."),
    ("dtype", ("--generator-dtype",), str, "float16, bfloat16 or float32 (default: automatic)."),
    ("cpu_offload", ("--cpu-offload",), bool, "Offload idle components to the CPU (small GPUs)."),
    ("attention_slicing", ("--attention-slicing",), bool, "Compute attention in slices (less memory, slower)."),
    ("scheduler", ("--scheduler",), str, "Sampler instead of the model's own: ddim, pndm, euler, euler-a, dpm++, "
     "dpm++-karras, unipc (FLUX/SD3: flow-euler, flow-heun); e.g. dpm++ with --steps 25."),
    ("compile", ("--compile",), bool, "torch.compile the denoiser (the first renders pay the compile; GPU runs)."),
    ("vae_tiling", ("--vae-tiling",), bool, "Decode the VAE in tiles, one image at a time (large sizes, small GPUs)."),
]
#: ScorerOptions fields, by flag (bench).
SCORER_FLAGS: dict[str, tuple[str, ...]] = {
    "judge": ("--judge",),
    "judge_protocol": ("--judge-protocol",),
    "judge_category": ("--judge-category",),
    "judge_repeats": ("--judge-repeats",),
    "judge_scale": ("--judge-scale",),
    "clip_model": ("--clip-model",),
    "clip_complex_rule": ("--clip-complex-rule",),
    "blip_vqa_model": ("--blip-vqa-model",),
    "blip_vqa_questions": ("--blip-vqa-questions",),
    "blip_vqa_image_size": ("--blip-vqa-image-size",),
    "require_spacy": ("--require-spacy",),
    "blip_clip_recipe": ("--blip-clip-recipe",),
    "blip_clip_captioner": ("--blip-clip-captioner",),
    "blip_clip_clip_model": ("--blip-clip-clip-model",),
    "vqascore_model": ("--vqascore-model",),
    "vqascore_base_url": ("--vqascore-base-url",),
    "geneval_detector": ("--geneval-detector",),
    "geneval_clip_model": ("--geneval-clip-model",),
    "detector": ("--detector",),
    "detector_threshold": ("--detector-threshold",),
    "ocr_min_confidence": ("--ocr-min-confidence",),
    "dpg_questions": ("--dpg-questions",),
    "dpg_vqa": ("--dpg-vqa",),
    "dpg_skip_first_row": ("--dpg-skip-first-row",),
    "device": ("--scorer-device",),
}
_PREFIX = {"config": "cfg_", "run": "run_", "mllm": "mllm_", "generator": "gen_", "scorer": "score_"}


def _field_params(model: type[BaseModel], flags: dict[str, tuple[str, ...]], prefix: str,
                  names: tuple[str, ...] | None = None) -> list[inspect.Parameter]:
    params = []
    for name, opts in flags.items():
        if names is not None and name not in names:
            continue
        field = model.model_fields[name]
        kind, choices = _cli_type(field.annotation)
        default = field.get_default(call_default_factory=True)
        if field.annotation is bool:
            option = typer.Option(bool(default), *opts, help=field.description or "")
            params.append(inspect.Parameter(prefix + name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=bool))
            continue
        if not isinstance(default, (int, float, str)) or isinstance(default, bool):
            default = None
        if choices:
            kind = choice_type(name, choices)
            default = kind(default) if default is not None else None
        option = typer.Option(default, *opts, help=field.description or "", show_default=default is not None)
        params.append(inspect.Parameter(prefix + name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=kind | None if default is None else kind))
    return params


def _cli_type(annotation: Any) -> tuple[type, list[str] | None]:
    """The scalar type a flag parses, and its choices for a Literal."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return str, [str(a) for a in typing.get_args(annotation)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in args:
            kind, choices = _cli_type(arg)
            if kind in (int, float, str):
                return kind, choices
    if annotation in (int, float, str):
        return annotation, None
    return str, None


def choice_type(name: str, choices: list[str] | tuple[str, ...]) -> type[enum.Enum]:
    """An enum of string choices: how typer offers a fixed set of values."""
    return enum.Enum(name.title().replace("_", ""), {c: c for c in choices}, type=str)  # type: ignore[return-value]


def plain(value: Any) -> Any:
    """A flag value as the settings take it (an enum choice becomes its string)."""
    return value.value if isinstance(value, enum.Enum) else value


def config_params(names: tuple[str, ...] | None = None) -> list[inspect.Parameter]:
    """Config flags (all, or those named) and --size; the run settings' flags, with --structured,
    --templates and --prices."""
    params = _field_params(GuidanceConfig, CONFIG_FLAGS, _PREFIX["config"], names)
    params += _field_params(RunSettings, RUN_FLAGS, _PREFIX["run"])
    extra: list[tuple[str, Any, Any]] = [
        ("structured", bool, typer.Option(False, "--structured", help="Ask for structured (JSON-schema / tool-call) answers instead of text.")),
        ("templates", str | None, typer.Option(None, "--templates", metavar="DIR", help="Directory whose files override the built-in prompts.")),
        ("prices", str | None, typer.Option(None, "--prices", metavar="FILE", help='JSON price table, {"model": [USD per 1M input, per 1M output]}.')),
    ]
    params += [inspect.Parameter(_PREFIX["run"] + n, inspect.Parameter.KEYWORD_ONLY, default=o, annotation=t)
               for n, t, o in extra]
    if names is None or "width" in names:
        size = typer.Option(None, "--size", help="WIDTHxHEIGHT, or one number (default: the generator's).")
        params.append(inspect.Parameter(_PREFIX["config"] + "size", inspect.Parameter.KEYWORD_ONLY, default=size,
                                        annotation=str | None))
    return params


def mllm_params() -> list[inspect.Parameter]:
    spec = inspect.Parameter("mllm", inspect.Parameter.KEYWORD_ONLY, annotation=str | None, default=typer.Option(
        None, "--mllm", help="Planner/judge: openai:gpt-4o, google_genai:gemini-2.5-flash, ollama:gemma3:27b, "
                             "transformers:ID, replay:RUN.json (default: from API keys in the environment)."))
    return [spec] + _field_params(MllmOptions, MLLM_FLAGS, _PREFIX["mllm"])


def generator_params() -> list[inspect.Parameter]:
    from mllm_guidance.backends.registry import available_generators

    names = ", ".join(available_generators())  # the registry's own list, entry-point generators included
    spec = inspect.Parameter("generator", inspect.Parameter.KEYWORD_ONLY, annotation=str | None, default=typer.Option(
        None, "--generator", help=f"Layout-to-image model: {names}; NAME:MODEL picks other weights, e.g. "
                                  "text2image:MODEL (default: gligen-xl with a CUDA GPU, else sketch)."))
    params = [spec]
    for key, flags, kind, text in GENERATOR_FLAGS:
        default: Any = False if kind is bool else None
        params.append(inspect.Parameter(_PREFIX["generator"] + key, inspect.Parameter.KEYWORD_ONLY,
                                        annotation=kind if kind is bool else kind | None,
                                        default=typer.Option(default, *flags, help=text)))
    return params


def scorer_params() -> list[inspect.Parameter]:
    """Scorer flags, plus the judge's server and its temperature (a number, or none)."""
    from mllm_guidance.eval.scorers import ScorerOptions

    prefix = _PREFIX["scorer"]
    extra = [
        inspect.Parameter(prefix + "judge_base_url", inspect.Parameter.KEYWORD_ONLY, annotation=str | None, default=typer.Option(
            None, "--judge-base-url", metavar="URL", help="Server of an OpenAI-compatible or Ollama judge (the guide's --mllm-base-url is not used).")),
        inspect.Parameter(prefix + "judge_temperature", inspect.Parameter.KEYWORD_ONLY, annotation=str, default=typer.Option(
            "0", "--judge-temperature", metavar="T", help="Judge sampling temperature; none: the provider's default.")),
    ]
    return _field_params(ScorerOptions, SCORER_FLAGS, prefix) + extra


def scorer_options(options: dict[str, Any], mllm: MllmOptions, concurrency: int) -> Any:
    """ScorerOptions from the bench flags; a refused value is one line naming its flag. The judge
    keeps the guide's timeout and rate-limit budget (shared where it uses the same key)."""
    from mllm_guidance.eval.scorers import ScorerOptions

    prefix = _PREFIX["scorer"]
    values = {k.removeprefix(prefix): plain(v) for k, v in options.items() if k.startswith(prefix) and v is not None}
    base_url = values.pop("judge_base_url", None)
    temperature = str(values.pop("judge_temperature", "0"))
    if temperature.lower() == "none":
        values["judge_temperature"] = None
    else:
        try:
            values["judge_temperature"] = float(temperature)
        except ValueError:
            raise InputError(f"--judge-temperature {temperature!r}: give a number, or none for the provider's default") from None
    budget = {name: value for name in ("rpm", "tpm") if (value := getattr(mllm, name)) is not None}
    values["judge_options"] = {"timeout": mllm.timeout, **budget, **({"base_url": base_url} if base_url else {})}
    values["judge_concurrency"] = concurrency
    try:
        return ScorerOptions(**values)
    except ValidationError as exc:
        raise InputError(_first_error(exc, {**SCORER_FLAGS, "judge_temperature": ("--judge-temperature",)})) from None


def with_params(*groups: list[inspect.Parameter]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the generated flags: they arrive in ``**options``."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params = own + [p for group in groups for p in group]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            return fn(**kwargs)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer must read the signature above, not the original's
        return command

    return decorate


# -- turning flag values into settings ----------------------------------------------------------


def config_values(options: dict[str, Any]) -> dict[str, Any]:
    """The GuidanceConfig fields the flags set (unset flags leave the config's defaults)."""
    values: dict[str, Any] = {}
    prefix = _PREFIX["config"]
    for key, value in options.items():
        if not key.startswith(prefix) or value is None:
            continue
        name, value = key.removeprefix(prefix), plain(value)
        if name == "size":
            values["width"], values["height"] = parse_size(value)
        else:
            values[name] = value
    return values


def settings_values(options: dict[str, Any]) -> dict[str, Any]:
    """The RunSettings fields the flags set (unset flags leave the defaults)."""
    values: dict[str, Any] = {}
    prefix = _PREFIX["run"]
    for key, value in options.items():
        if not key.startswith(prefix) or value is None:
            continue
        name, value = key.removeprefix(prefix), plain(value)
        if name == "structured":
            if value:
                values["structured_steps"] = True
        elif name == "templates":
            values["templates_dir"] = value
        elif name == "prices":
            from mllm_guidance.backends.prices import load_prices

            values["prices"] = load_prices(value)
        else:
            values[name] = value
    return values


def make_cli_settings(options: dict[str, Any]) -> RunSettings:
    """The run settings from the flags; a refused value is one line naming its flag."""
    try:
        return RunSettings(**settings_values(options))
    except ValidationError as exc:
        raise InputError(_first_error(exc, {**RUN_FLAGS, "templates_dir": ("--templates",),
                                            "structured_steps": ("--structured",), "prices": ("--prices",)})) from None


def make_cli_config(values: dict[str, Any]) -> GuidanceConfig:
    """A config from flag values; a refused value is one line naming its flag."""
    try:
        return GuidanceConfig(**values)
    except ValidationError as exc:
        raise InputError(_first_error(exc, {**CONFIG_FLAGS, "width": ("--size",), "height": ("--size",)})) from None


def mllm_options(options: dict[str, Any]) -> MllmOptions:
    prefix = _PREFIX["mllm"]
    values = {k.removeprefix(prefix): v for k, v in options.items() if k.startswith(prefix) and v is not None}
    try:
        return MllmOptions(**values)
    except ValidationError as exc:
        raise InputError(_first_error(exc, MLLM_FLAGS)) from None


def generator_options(options: dict[str, Any]) -> dict[str, Any]:
    prefix = _PREFIX["generator"]
    return {k.removeprefix(prefix): v for k, v in options.items()
            if k.startswith(prefix) and v not in (None, False)}


def _first_error(exc: ValidationError, flags: dict[str, tuple[str, ...]]) -> str:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error.get("loc") else ""
    if not field:  # the whole config refused a combination: the validator's sentence says which
        return first_problem(exc)
    flag = "/".join(flags.get(field, (field,)))
    value = error.get("input")
    shown = json.dumps(value) if isinstance(value, (int, float, str)) else ""
    return f"{flag} {shown}: {first_problem(exc)}".replace("  ", " ")


def parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("×", "x").split("x")
    try:
        w, h = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        raise InputError(f"--size {text!r}: give WIDTHxHEIGHT, e.g. 1024x1024, or one number") from None
    if len(parts) > 2 or not (64 <= w <= 4096 and 64 <= h <= 4096):
        raise InputError(f"--size {text!r}: width and height must be between 64 and 4096")
    return w, h


def out_dir(value: str | None, prompt: str) -> Path:
    from mllm_guidance.spec import default_run_dir

    return Path(value) if value else default_run_dir(prompt)
