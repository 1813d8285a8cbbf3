"""What a run does: ``GuidanceConfig``, the method's knobs.

The config shapes the graph and is fixed when it is built. What a run runs on (the backends, the
run directory) is its ``Context`` (``context.py``); how those are built is the run spec's business
(``run.py``).

Modes (the thesis's ablations):

=================  ==========================================================================
``plain``          no layout: one text-to-image generation (the SD / SDXL baseline)
``place``          place, then render (LMD+ / LayoutGPT-style, thesis Table 5.1)
``place+correct``  place, self-correct until stable, render (Table 5.2)
``align``          place (+ self-correct), then align -> render until align returns an empty
                   layout, without reasoning (Table 5.3); the last image is the output
``full``           the whole method (Table 6.1): place, self-correct, then reason -> align ->
                   render until the score is good, keeping the best image
=================  ==========================================================================

Options beyond the thesis, all off by default so the thesis's loop is unchanged (issue 22):

- ``repair``: after align, repaint only the changed objects' region of an earlier image instead of
  rendering anew (``mllm_guidance.repair``); ``regions`` always, ``auto`` while the mask covers less
  than ``repair_max_share`` of the image. The image repaired is the best so far (``repair_base``):
  the loop outputs its best image, so a repair that made things worse is dropped, not built on; and
  what is kept outside the mask is what the judge scored highest. ``latest`` repairs the image align
  has just looked at, whose faults its new layout answers. Unscored modes (``align``) repair the latest.
- ``candidates`` / ``verifier``: every render draws N images (seeds s, s+1, ...), a cheap verifier
  ranks them and only the best goes on to the judge.
- ``judge_mode``: ``pairwise`` asks the MLLM which of two equally scored images fits the prompt
  better (the new one or the best so far), and keeps the one it picks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mllm_guidance.errors import ConfigError
from mllm_guidance.prompts.steps import STEP_NAMES

Mode = Literal["plain", "place", "place+correct", "align", "full"]
MODES: tuple[str, ...] = ("plain", "place", "place+correct", "align", "full")
SeedPolicy = Literal["same", "increment"]
AlignContext = Literal["image", "reasoning", "reasoning+layout"]
AlignEmpty = Literal["stop", "reask"]
RepairMode = Literal["off", "regions", "auto"]
#: Verifiers that rank candidates (``eval/verifiers.py``): CLIP image-prompt cosine, CLIP of each
#: planned box's crop against its object (layout adherence), BLIP-VQA.
Verifier = Literal["clip", "layout-clip", "blip-vqa"]
#: ``is_good`` callables receive the score (1..5) and the reasoning text.
IsGood = Callable[[int, str], bool]
ALL_STEPS = frozenset(STEP_NAMES)


class GuidanceConfig(BaseModel):
    """The method's knobs. Defaults follow the thesis: K = 5, good means a score of 5."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    mode: Mode = Field(default="full", description="Which steps run: full (the whole loop), align (align without "
                       "reasoning), correct (place, self-correct, render), place (place, render), plain (no layout).")
    max_align_rounds: int = Field(default=5, ge=0, le=50, description="Align rounds K: align calls at most.")
    max_correct_rounds: int | None = Field(
        default=None, ge=0, le=50, description="Self-correct calls at most; unset: K, as in the thesis."
    )
    is_good: int | IsGood = Field(
        default=5, description="Score threshold (good when score >= it) or a callable(score, reasoning)."
    )
    self_correct: bool | None = Field(
        default=None, description="Run self-correct before the first render; None: as the mode says."
    )
    align_context: AlignContext = Field(
        default="reasoning+layout",
        description="What align sees besides the prompt and image: image (Table 6.1 as written), reasoning "
                    "(+ the judge's score and reasoning), reasoning+layout (+ the boxes the image was drawn from).",
    )
    align_empty: AlignEmpty = Field(
        default="reask",
        description="Full mode, when align answers an empty layout although the score is not good: stop, or "
                    "reask once with the score and reasoning.",
    )
    review: Literal["off", "plan", "plan+align"] = Field(
        default="off", description="Pause for a person to approve, edit or stop the layout: before the first render "
                                   "(plan), and also before each re-render (plan+align). Needs a checkpoint.",
    )
    seed: int | None = Field(default=None, ge=0, lt=2**63, description="Random seed (default: one picked at random, and recorded).")
    seed_policy: SeedPolicy = Field(
        default="same", description="same: one seed every round, so only the layout changes; increment: seed + round."
    )
    width: int | None = Field(default=None, ge=64, le=4096, description="Image width in pixels (default: the generator's own).")
    height: int | None = Field(default=None, ge=64, le=4096, description="Image height in pixels (default: the generator's own).")
    steps: int | None = Field(default=None, ge=1, le=1000, description="Denoising steps (default: the generator's own).")
    guidance_scale: float | None = Field(default=None, ge=0, le=100, description="Classifier-free guidance scale: how "
                                         "strongly the image follows the prompt (default: the generator's own).")
    negative_prompt: str | None = Field(default=None, description="What the image must not show (default: the "
                                        "generator's own, usually none).")
    parse_retries: int = Field(default=2, ge=0, le=10, description="Extra calls after an unreadable answer.")
    structured_steps: frozenset[str] = Field(
        default=frozenset(), description="Steps answered through the model's structured output instead of text."
    )
    templates_dir: str | None = Field(default=None, description="Directory whose files override the built-in prompts.")
    layout_tolerance: float = Field(default=0.01, ge=0, le=0.5, description="Box equality tolerance for the stop test.")
    mllm_image_side: int = Field(default=768, ge=64, le=4096, description="Images sent to the MLLM are downscaled to this side "
                                 "(768: what OpenAI's high detail keeps and one Gemini tile; more pixels cost tokens, not detail).")
    mllm_image_format: Literal["jpeg", "png"] = Field(default="jpeg", description="How images are encoded for the MLLM "
                                                      "(JPEG: a fraction of PNG's bytes and encode time).")
    round_format: Literal["png", "webp", "jpeg"] = Field(
        default="png", description="How the round images are kept: png, webp (lossless, smaller) or jpeg (quality 95, "
                                   "smallest); the final image is always PNG.")
    repair: RepairMode = Field(
        default="off", description="After align, repaint only the changed objects' boxes of the best image so far: off, "
                                   "regions (always), auto (while the mask covers less than --repair-max-share).",
    )
    repair_margin: float = Field(default=0.05, ge=0, le=0.5, description="Repair mask: each changed box grown by this "
                                 "fraction of the image side.")
    repair_max_share: float = Field(default=0.5, gt=0, le=1, description="auto repairs while the mask covers less than "
                                    "this share of the image, else renders anew.")
    repair_base: Literal["best", "latest"] = Field(default="best", description="The image a repair starts from: the best "
                                                   "so far, or the latest.")
    candidates: int = Field(default=1, ge=1, le=16, description="Images per render (seeds s, s+1, ...); the verifier "
                            "picks the one the judge sees.")
    verifier: Verifier | None = Field(default=None, description="Ranks the candidates: clip, layout-clip, blip-vqa.")
    verifier_model: str | None = Field(default=None, description="The verifier's weights (default: the scorer's own).")
    judge_mode: Literal["absolute", "pairwise"] = Field(
        default="absolute", description="pairwise: when a new image ties the best so far, the MLLM compares the two.",
    )
    prices: dict[str, tuple[float, float]] = Field(
        default={}, description="USD per 1M (input, output) tokens by model name, over the built-in table."
    )

    @field_validator("is_good", mode="before")
    @classmethod
    def _is_good(cls, value: Any) -> Any:
        if callable(value):
            return value
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            raise ValueError("is_good as a threshold must be an integer from 1 to 5")
        return value

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

    @model_validator(mode="after")
    def _consistent(self) -> GuidanceConfig:
        if self.mode in ("plain", "place") and self.self_correct:
            raise ValueError(f"mode {self.mode!r} has no self-correct step; use 'place+correct' or 'full'")
        if self.repair != "off" and not self.aligns:
            raise ValueError(f"repair needs the align loop; mode {self.mode!r} renders once: use 'align' or 'full'")
        if self.candidates > 1 and self.verifier is None:
            raise ValueError("candidates > 1 needs a verifier to pick one: set verifier (clip, layout-clip, blip-vqa)")
        if self.judge_mode == "pairwise" and not self.reasons:
            raise ValueError(f"judge_mode 'pairwise' needs the judge; mode {self.mode!r} has none: use 'full'")
        return self

    # -- what the mode implies ----------------------------------------------------------------

    @property
    def correct_limit(self) -> int:
        """Self-correct calls at most (the thesis uses the same K for both loops)."""
        return self.max_align_rounds if self.max_correct_rounds is None else self.max_correct_rounds

    @property
    def uses_layout(self) -> bool:
        return self.mode != "plain"

    @property
    def corrects(self) -> bool:
        if self.mode in ("plain", "place"):
            return False
        if self.self_correct is not None:
            return self.self_correct
        return True

    @property
    def reasons(self) -> bool:
        return self.mode == "full"

    @property
    def aligns(self) -> bool:
        return self.mode in ("align", "full")

    def good(self, score: int, reasoning: str) -> bool:
        if callable(self.is_good):
            return bool(self.is_good(score, reasoning))
        return score >= self.is_good

    def align_blocks(self) -> set[str]:
        """The optional blocks of the align template this config uses."""
        if not self.aligns:
            return set()
        needed = set()
        if self.reasons and self.align_context != "image":
            needed.add("evaluation")
        if self.align_context == "reasoning+layout":
            needed.add("layout")
        if self.reasons and self.align_empty == "reask":
            needed.add("empty answer")
        return needed

    def round_image(self, round_index: int) -> str:
        """The file name of round ``round_index``'s image (``round_format``)."""
        return f"round-{round_index}{ROUND_SUFFIX[self.round_format]}"

    def round_seed(self, base: int, round_index: int) -> int:
        return base if self.seed_policy == "same" else (base + round_index) % 2**63

    def describe(self) -> dict[str, Any]:
        """JSON-safe view for run.json: a callable is_good is named, not serialized."""
        data = self.model_dump(mode="python")
        if callable(self.is_good):
            data["is_good"] = f"callable:{getattr(self.is_good, '__qualname__', repr(self.is_good))}"
        data["structured_steps"] = sorted(self.structured_steps)
        return data


#: The file extension of each ``round_format``.
ROUND_SUFFIX = {"png": ".png", "webp": ".webp", "jpeg": ".jpg"}


def make_config(config: GuidanceConfig | dict[str, Any] | None = None, **overrides: Any) -> GuidanceConfig:
    """A config from a config, a dict or keywords, with errors as ``ConfigError``."""
    base = dict(config) if isinstance(config, GuidanceConfig) else dict(config or {})
    try:
        return GuidanceConfig(**{**base, **overrides})
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
