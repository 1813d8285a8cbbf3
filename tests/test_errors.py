"""The one reading of a failed call (``errors.classify`` / ``errors.explain``), shared by the MLLM's
retries, the nodes and the remote generators."""

import subprocess
import sys

import pytest

from mllm_guidance.errors import (
    MLLM_ADVICE,
    RETRYABLE,
    Advice,
    classify,
    describe_model,
    explain,
    explain_mllm,
    key_env_for,
    status_of,
)


class HTTPError(Exception):
    def __init__(self, status: int, text: str = "nope") -> None:
        super().__init__(text)
        self.status_code = status


class Response:
    def __init__(self, status: int) -> None:
        self.status_code = status


class ReadTimeout(Exception):
    pass


class ConnectError(Exception):
    pass


@pytest.mark.parametrize(("exc", "kind"), [
    (HTTPError(429), "rate_limit"), (HTTPError(503), "server"), (HTTPError(408), "server"),
    (HTTPError(401), "auth"), (HTTPError(403), "auth"), (HTTPError(404), "not_found"),
    (HTTPError(422), "bad_request"), (ReadTimeout("slow"), "timeout"), (TimeoutError(), "timeout"),
    (ConnectError("refused"), "unreachable"), (ConnectionResetError(), "unreachable"), (KeyError("x"), "other"),
])
def test_classify_reads_the_status_or_the_class_name(exc, kind):
    assert classify(exc) == kind
    assert (kind in RETRYABLE) == (kind in ("rate_limit", "server", "timeout", "unreachable"))


def test_classify_follows_the_cause_chain_and_the_response():
    try:
        try:
            raise HTTPError(429)
        except HTTPError as inner:
            raise RuntimeError("wrapped by LangChain") from inner
    except RuntimeError as outer:
        assert classify(outer) == "rate_limit"
    exc = Exception("no status here")
    exc.response = Response(502)  # type: ignore[attr-defined]
    assert status_of(exc) == 502 and classify(exc) == "server"


def test_explain_words_each_kind_with_the_callers_advice():
    remote = Advice(timeout="raise the generator's timeout or try later")
    slow = ReadTimeout("slow")
    slow.mllm_guidance_tries = 3  # type: ignore[attr-defined]
    assert explain(slow, "X at http://h", call="/prompt", advice=remote) == \
        "X at http://h did not answer /prompt in time after 3 tries; raise the generator's timeout or try later"
    assert explain(slow, "M") == "M did not answer in time after 3 tries; try later"
    assert explain(HTTPError(401), "M", key_env="MY_KEY") == "M rejected the credentials (401): check MY_KEY"
    assert explain(HTTPError(404, "gone"), "X", call="/v1/flux") == "X refused /v1/flux (404): gone"
    assert explain(HTTPError(404), "M", advice=MLLM_ADVICE).startswith("M: model or endpoint not found (404); check")
    assert explain(HTTPError(500, "boom"), "M", advice=MLLM_ADVICE) == \
        "M kept failing after 1 tries (500): boom; try again later or raise --mllm-retries"
    assert explain(KeyError("k"), "M") == "M failed: KeyError: 'k'"


def test_explain_masks_secrets_in_what_it_quotes():
    line = explain(HTTPError(400, "bad key sk-abcdefghijklmnopqrstuvwxyz0123456789"), "M")
    assert line.startswith("M refused the request (400): ") and "abcdefghijklmnop" not in line


def test_explain_mllm_names_the_provider_model_inside_the_retrying_wrapper():
    from mllm_guidance.backends.retry import RetryingChatModel
    from tests.fakes import RecordingChatModel

    class ChatOpenAI(RecordingChatModel):
        model_name: str = "gpt-4o"
        openai_api_base: str = "http://user:secret@127.0.0.1:9/v1"

    model = RetryingChatModel(wrapped=ChatOpenAI(replies={}))
    assert describe_model(model).startswith("ChatOpenAI(gpt-4o) at http://") and "secret" not in describe_model(model)
    assert key_env_for(model) == "OPENAI_API_KEY"
    assert explain_mllm(HTTPError(401), model).endswith("rejected the credentials (401): check OPENAI_API_KEY")


def test_errors_imports_no_client_library():
    code = ("import sys, mllm_guidance.errors; "
            "heavy = [m for m in ('langchain_core', 'httpx', 'openai', 'langgraph') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
