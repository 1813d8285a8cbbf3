"""The operator's settings for the servers (LangGraph server, MCP, studio), read one way: the
environment (``MLLM_GUIDANCE_*``), then the command's flags over it.

The operator runs the server with their credentials and disk; these say what runs use and how far
clients may go. Clients never set them (their per-run knobs are ``knobs.py``'s). Every variable:

=====================================  ===========================================================
``MLLM_GUIDANCE_MLLM``                 the MLLM runs use (spec string)
``MLLM_GUIDANCE_GENERATOR``            the generator runs use (spec string)
``MLLM_GUIDANCE_ALLOWED_MLLMS``        comma-separated MLLM specs a client may pick instead (server)
``MLLM_GUIDANCE_ALLOWED_GENERATORS``   comma-separated generator specs a client may pick (server)
``MLLM_GUIDANCE_MLLM_BASE_URL``        the MLLM server (only the operator sets it)
``MLLM_GUIDANCE_RUNS_DIR``             the runs root (default: runs/server, runs for MCP, runs/studio)
``MLLM_GUIDANCE_CONFIG``               the method's defaults, a JSON object of GuidanceConfig fields
``MLLM_GUIDANCE_RUN_SETTINGS``         how runs ask and report, a JSON object of RunSettings fields
``MLLM_GUIDANCE_CLIENT_MAX_ROUNDS``    the largest K a client may ask for (default 20)
``MLLM_GUIDANCE_CLIENT_MAX_CANDIDATES``  the most candidates per render a client may ask for (4)
``MLLM_GUIDANCE_CLIENT_MAX_SIDE``      the largest width or height a client may ask for (2048)
``MLLM_GUIDANCE_CLIENT_MODES``         comma-separated modes a client may pick (all)
``MLLM_GUIDANCE_CLIENT_KNOBS``         comma-separated knobs a client may set (all)
``MLLM_GUIDANCE_MAX_CONCURRENT``       runs at once (MCP; default 2)
``MLLM_GUIDANCE_KEEP_RUNS``            run directories an MCP server keeps (default 200)
``MLLM_GUIDANCE_BENCH_DIR``            the studio's benchmark root (default .)
=====================================  ===========================================================
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mllm_guidance.errors import ConfigError, first_problem
from mllm_guidance.knobs import KnobLimits

#: A comma-separated list in the environment (``a,b``), a list in Python.
Names = Annotated[tuple[str, ...], NoDecode]


class OperatorSettings(BaseSettings):
    """Environment first (``MLLM_GUIDANCE_*``); keyword arguments (the flags) override it."""

    model_config = SettingsConfigDict(env_prefix="MLLM_GUIDANCE_", extra="ignore", frozen=True)

    mllm: str | None = None
    generator: str | None = None
    allowed_mllms: Names = ()
    allowed_generators: Names = ()
    mllm_base_url: str | None = None
    runs_dir: str | None = None
    config: dict[str, Any] = Field(default={}, description="GuidanceConfig fields (JSON in the environment).")
    run_settings: dict[str, Any] = Field(default={}, description="RunSettings fields (JSON in the environment).")
    client_max_rounds: int = Field(default=KnobLimits().max_rounds, ge=0, le=50)
    client_max_candidates: int = Field(default=KnobLimits().max_candidates, ge=1, le=16)
    client_max_side: int = Field(default=KnobLimits().max_side, ge=64, le=4096)
    client_modes: Names = KnobLimits().modes
    client_knobs: Names = KnobLimits().client_knobs
    max_concurrent: int = Field(default=2, ge=1)
    keep_runs: int = Field(default=200, ge=1)
    bench_dir: str = "."

    @field_validator("allowed_mllms", "allowed_generators", "client_modes", "client_knobs", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @property
    def limits(self) -> KnobLimits:
        return KnobLimits(max_rounds=self.client_max_rounds, max_candidates=self.client_max_candidates,
                          max_side=self.client_max_side, modes=self.client_modes, client_knobs=self.client_knobs)


def operator_settings(**flags: Any) -> OperatorSettings:
    """The settings from the environment with the given flags over it (a flag left unset, None,
    keeps the environment's value); a bad value is one line naming its variable."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        settings = OperatorSettings(**given)
        settings.limits  # noqa: B018 - unknown modes or knobs are refused here, not at the first call
    except (ValidationError, ValueError) as exc:
        problem = first_problem(exc) if isinstance(exc, ValidationError) else str(exc)
        where = ""
        if isinstance(exc, ValidationError) and exc.errors() and exc.errors()[0].get("loc"):
            where = f"MLLM_GUIDANCE_{str(exc.errors()[0]['loc'][0]).upper()}: "
        raise ConfigError(f"operator settings: {where}{problem}") from None
    return settings
