"""``MllmOptions``: how a spec string becomes a chat model. Its own small module so the command
line can build its flags from these fields without importing LangChain (``--help`` stays fast)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_TIMEOUT = 120.0


class MllmOptions(BaseModel):
    """How a spec string becomes a chat model: where, how patient, on which device."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = Field(default=None, description="Server of an OpenAI-compatible (vLLM, llama.cpp, LM Studio) or Ollama MLLM.")
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, le=3600, description="Seconds one MLLM call may take, as a whole.")
    retries: int = Field(default=4, ge=0, le=20, description="Extra tries after a rate limit, server error, timeout or dropped connection.")
    retry_base_delay: float = Field(default=1.0, ge=0, le=60, description="First backoff in seconds; doubles per try, with jitter.")
    retry_max_delay: float = Field(default=30.0, ge=0, le=600, description="Longest single backoff in seconds.")
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute the API key allows: calls wait their turn "
                            "instead of meeting 429s (one budget per key, shared by the guide and the judge).")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute the API key allows (estimated before each "
                            "call, settled with the provider's count after it); shared like --mllm-rpm.")
    device: str | None = Field(default=None, description="Device of an in-process (transformers:) MLLM: cuda, mps, cpu.")
    dtype: str | None = Field(default=None, description="Dtype of an in-process MLLM: bfloat16, float16, float32.")
