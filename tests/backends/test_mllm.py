import pytest

from mllm_guidance.backends import mllm
from mllm_guidance.backends.mllm import default_mllm_spec, describe_mllm, model_name, resolve_mllm, split_spec
from mllm_guidance.backends.retry import RetryingChatModel
from mllm_guidance.errors import BackendError, provider_model
from tests.fakes import RecordingChatModel


def test_auto_default_follows_the_keys():
    assert default_mllm_spec({"OPENAI_API_KEY": "x", "GOOGLE_API_KEY": "y"}) == ("openai:gpt-4o", "OPENAI_API_KEY is set")
    assert default_mllm_spec({"GEMINI_API_KEY": "y"})[0] == "google_genai:gemini-2.5-flash"
    assert default_mllm_spec({"GOOGLE_API_KEY": "y"})[0] == "google_genai:gemini-2.5-flash"


@pytest.mark.parametrize("gib,size", [(80, "27b"), (40, "12b"), (24, "4b"), (8, "4b")])
def test_auto_default_falls_back_to_a_local_gemma_that_fits(gib, size):
    spec, why = default_mllm_spec({}, memory_gib=gib)
    assert spec == f"transformers:google/gemma-3-{size}-it" and "no API key found" in why


def test_auto_default_without_torch_says_what_to_do(monkeypatch):
    monkeypatch.setattr(mllm, "_accelerator", lambda: (None, 0.0))
    with pytest.raises(BackendError, match="set OPENAI_API_KEY .* GOOGLE_API_KEY .*mllm-guidance\\[local\\]"):
        default_mllm_spec({})


def test_no_key_and_no_gpu_stops_at_once_naming_what_to_set(tmp_path, capsys, monkeypatch):
    """This machine has torch and no GPU: instead of a gated multi-GB download answering in minutes,
    one line names the variables, and the local model stays one flag away (issue 15, item 6)."""
    import time

    from mllm_guidance.cli import main

    with pytest.raises(BackendError, match="no GPU: set OPENAI_API_KEY .*GEMINI_API_KEY.*transformers:google/gemma-3-4b-it"):
        default_mllm_spec({})
    for key in ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    started = time.perf_counter()
    assert main(["generate", "a cat on a mat", "--generator", "sketch", "--quiet", "--out", str(tmp_path / "r")]) == 2
    assert time.perf_counter() - started < 10
    err = capsys.readouterr().err
    assert err.startswith("error: no MLLM given, no API key found and no GPU") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # nothing made for a run that cannot start


@pytest.mark.parametrize("spec,expected", [
    ("openai:gpt-4o", ("openai", "gpt-4o")), ("ollama:gemma3:27b", ("ollama", "gemma3:27b")),
    ("google_genai:gemini-2.5-flash", ("google_genai", "gemini-2.5-flash")),
    ("gemini-2.5-flash", ("google_genai", "gemini-2.5-flash")), ("gpt-4o-mini", ("openai", "gpt-4o-mini")),
    ("o3", ("openai", "o3")), ("transformers:/models/gemma", ("transformers", "/models/gemma")),
    ("replay:runs/a/run.json", ("replay", "runs/a/run.json")),
])
def test_split_spec(spec, expected):
    assert split_spec(spec) == expected


def test_bare_names_without_a_known_provider_are_refused():
    with pytest.raises(BackendError, match="provider:model"):
        split_spec("llama-3")


def test_missing_keys_name_the_variable():
    with pytest.raises(BackendError, match="export OPENAI_API_KEY"):
        resolve_mllm("openai:gpt-4o", environ={})
    with pytest.raises(BackendError, match="GOOGLE_API_KEY.*GEMINI_API_KEY"):
        resolve_mllm("gemini-2.5-flash", environ={})


def test_provider_models_are_built_without_client_retries():
    m = resolve_mllm("openai:gpt-4o", environ={"OPENAI_API_KEY": "sk-x"}, timeout=7)
    assert (m.model_name, m.max_retries, m.request_timeout) == ("gpt-4o", 0, 7)
    local = resolve_mllm("openai:qwen2.5-vl", base_url="http://127.0.0.1:9/v1", environ={})
    assert local.openai_api_base == "http://127.0.0.1:9/v1"
    g = resolve_mllm("gemini-2.5-flash", environ={"GEMINI_API_KEY": "k"})
    assert type(provider_model(g)).__name__ == "ChatGoogleGenerativeAI" and g.max_retries == 0
    # the one retry policy travels with the model instead
    assert isinstance(m, RetryingChatModel) and (m.retries, m.timeout) == (4, 7)
    o = resolve_mllm("ollama:gemma3:27b", environ={"OLLAMA_HOST": "http://127.0.0.1:9"})
    assert (o.model, o.base_url) == ("gemma3:27b", "http://127.0.0.1:9")
    assert model_name(m) == "gpt-4o" and describe_mllm(m) == "ChatOpenAI(gpt-4o)"


def test_objects_pass_through_and_bad_specs():
    model = RecordingChatModel(replies={})
    assert resolve_mllm(model) is model
    with pytest.raises(BackendError):
        resolve_mllm("nosuchprovider:model")
    with pytest.raises(BackendError, match="spec"):
        resolve_mllm("  ")
