"""How a run asks and reports, beside the method: ``RunSettings``.

``GuidanceConfig`` holds the method's knobs (what the thesis varies: mode, K, is_good, seeds, ...).
These are the run's transport and reporting choices, which change no step of the algorithm: the
prompt files, how images and answers travel to and from the MLLM, how round images are kept on
disk, and the price table of the cost estimate. They are recorded in ``spec.json`` (``RunSpec.settings``), so ``resume`` asks the same way,
and reach the nodes through ``Context.settings``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mllm_guidance.errors import ConfigError
from mllm_guidance.prompts.steps import STEP_NAMES

ALL_STEPS = frozenset(STEP_NAMES)
#: The file extension of each ``round_format``.
ROUND_SUFFIX = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}


class RunSettings(BaseModel):
    """Transport and reporting settings of one run (defaults: the built-in prompts, text answers,
    768-pixel JPEG images to the MLLM, the built-in price table)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    templates_dir: str | None = Field(default=None, description="Directory whose files override the built-in prompts.")
    structured_steps: frozenset[str] = Field(
        default=frozenset(), description="Steps answered through the model's structured output instead of text."
    )
    mllm_image_side: int = Field(default=768, ge=64, le=4096, description="Images sent to the MLLM are downscaled to this side "
                                 "(768: what OpenAI's high detail keeps and one Gemini tile; more pixels cost tokens, not detail).")
    mllm_image_format: Literal["jpeg", "png"] = Field(default="jpeg", description="How images are encoded for the MLLM "
                                                      "(JPEG: a fraction of PNG's bytes and encode time).")
    round_format: Literal["png", "webp", "jpeg"] = Field(
        default="png", description="How the round images are kept: png, webp (lossless, smaller) or jpeg (quality 95, "
                                   "smallest); the final image is always PNG.")
    prices: dict[str, tuple[float, float]] = Field(
        default={}, description="USD per 1M (input, output) tokens by model name, over the built-in table."
    )

    @field_validator("structured_steps", mode="before")
    @classmethod
    def _structured(cls, value: Any) -> Any:
        if value is True:
            return ALL_STEPS
        if value in (False, None):
            return frozenset()
        steps = frozenset(value)
        unknown = steps - ALL_STEPS
        if unknown:
            raise ValueError(f"unknown steps {sorted(unknown)}; choose from {sorted(ALL_STEPS)}")
        return steps

    def round_image(self, round_index: int) -> str:
        """The file name of round ``round_index``'s image (``round_format``)."""
        return f"round-{round_index}{ROUND_SUFFIX[self.round_format]}"

    def describe(self) -> dict[str, Any]:
        """JSON-safe view for spec.json and run.json."""
        data = self.model_dump(mode="json")
        data["structured_steps"] = sorted(self.structured_steps)
        return data


#: The fields that lived in GuidanceConfig before issue 26: specs written then carry them there.
MOVED_FROM_CONFIG = tuple(RunSettings.model_fields)


def split_recorded(config: dict[str, Any], settings: dict[str, Any] | None = None) -> tuple[dict[str, Any], RunSettings]:
    """A recorded config (spec.json, run.json) as (GuidanceConfig fields, RunSettings): records
    written before the settings left the config keep them in it."""
    older = {k: v for k, v in config.items() if k in MOVED_FROM_CONFIG}
    return {k: v for k, v in config.items() if k not in MOVED_FROM_CONFIG}, make_settings({**older, **(settings or {})})


def make_settings(settings: RunSettings | dict[str, Any] | None = None, **overrides: Any) -> RunSettings:
    """Settings from settings, a dict or keywords, with errors as ``ConfigError``."""
    base = settings.model_dump() if isinstance(settings, RunSettings) else dict(settings or {})
    try:
        return RunSettings(**{**base, **overrides})
    except ValueError as exc:
        raise ConfigError(f"invalid run settings: {exc}") from exc
