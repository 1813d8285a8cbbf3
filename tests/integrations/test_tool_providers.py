"""The image tool inside `create_agent` with the OpenAI and Gemini chat models, against local stubs
that keep each provider's rules for tool results (issue 15, item 3): OpenAI refuses image parts in
`role: tool` messages with a 400; Gemini takes a tool result as a JSON function response, where an
image must not sit as base64 text the model cannot see. The default text result passes both; the
middleware shows the image to the model as a following user message on both; an image inside the
tool result is a 400 on OpenAI, while LangChain's Gemini integration moves it to an inline part."""

from __future__ import annotations

import base64
import json

import pytest
from langchain.agents import create_agent

from mllm_guidance import as_tool, image_middleware
from tests.fakes import PLACE, RecordingChatModel, score
from tests.stubs import StubServer

PROMPT = "A man is sitting under a tree while a bird is in the tree."
ASK = "Draw a man under a tree with a bird in it"


def planner():
    return RecordingChatModel(replies={"place": [PLACE], "self_correct": [PLACE], "reason": [score(5)]})


class OpenAIRules:
    """Chat Completions: a tool call first, then an answer; images only in user messages."""

    def __init__(self) -> None:
        self.saw_image = False

    def __call__(self, path, body):
        messages = body["messages"]
        for i, m in enumerate(messages):
            parts = m.get("content") if isinstance(m.get("content"), list) else []
            if m["role"] != "user" and any(p.get("type") == "image_url" for p in parts):
                return 400, {"error": {"message": f"Invalid 'messages[{i}]'. Image URLs are only allowed for messages "
                                                  "with role 'user', but this message with role '{m['role']}' contains an image URL.",
                                       "type": "invalid_request_error", "param": f"messages[{i}]", "code": None}}
        if not any(m["role"] == "tool" for m in messages):
            call = {"id": "call_1", "type": "function", "function": {"name": "generate_image", "arguments": json.dumps({"prompt": PROMPT})}}
            return 200, completion({"role": "assistant", "content": None, "tool_calls": [call]})
        after = messages[[m["role"] for m in messages].index("tool") + 1:]
        self.saw_image = any(p.get("type") == "image_url" and p["image_url"]["url"].startswith("data:image/png;base64,")
                             for m in after if m["role"] == "user" and isinstance(m["content"], list) for p in m["content"])
        return 200, completion({"role": "assistant", "content": "Here it is."})


def completion(message):
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "gpt-4o",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}


def openai_agent(stub, tool, middleware=()):
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model="gpt-4o", base_url=stub.url + "/v1", api_key="sk-test-000000000000000000000", max_retries=0)
    return create_agent(model, [tool], middleware=list(middleware))


@pytest.mark.parametrize("with_middleware", [False, True])
def test_openai_accepts_the_default_result_and_sees_the_image_through_the_middleware(tmp_path, with_middleware):
    rules = OpenAIRules()
    with StubServer(rules) as stub:
        agent = openai_agent(stub, as_tool(mllm=planner(), generator="sketch", runs_dir=tmp_path),
                             [image_middleware()] if with_middleware else [])
        out = agent.invoke({"messages": [("user", ASK)]})
    assert out["messages"][-1].content == "Here it is."
    tool_message = next(m for m in out["messages"] if m.type == "tool")
    assert isinstance(tool_message.content, str) or all(b.get("type") == "text" for b in tool_message.content)
    assert base64.b64decode(tool_message.artifact["image_base64"])[:4] == b"\x89PNG"
    assert rules.saw_image is with_middleware
    assert not any(m.type == "human" and isinstance(m.content, list) for m in out["messages"])  # state unchanged


def test_openai_refuses_an_image_inside_the_tool_result(tmp_path):
    """What users met before: the image as content of the tool message is a 400 on OpenAI."""
    import openai

    with StubServer(OpenAIRules()) as stub:
        agent = openai_agent(stub, as_tool(mllm=planner(), generator="sketch", runs_dir=tmp_path, image="content"))
        with pytest.raises(openai.BadRequestError, match="only allowed for messages with role 'user'"):
            agent.invoke({"messages": [("user", ASK)]})


class GeminiRules:
    """generateContent: a function call first, then an answer; a function response must be JSON
    without image data (the model would get it as text), images go in user turns as inlineData."""

    def __init__(self) -> None:
        self.saw_image = False
        self.image_as_text = False

    def __call__(self, path, body):
        contents = body.get("contents", [])
        responses = [p["functionResponse"] for c in contents for p in c.get("parts", []) if "functionResponse" in p]
        if not responses:
            part = {"functionCall": {"name": "generate_image", "args": {"prompt": PROMPT}}}
            return 200, gemini_reply(part)
        self.image_as_text = any("iVBOR" in json.dumps(r) for r in responses)
        last_response = max(i for i, c in enumerate(contents) if any("functionResponse" in p for p in c.get("parts", [])))
        self.saw_image = any("inlineData" in p or "inline_data" in p for c in contents[last_response:]
                             for p in c.get("parts", []) if c.get("role") == "user")
        return 200, gemini_reply({"text": "Here it is."})


def gemini_reply(part):
    return {"candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 2, "totalTokenCount": 12}}


@pytest.mark.parametrize("image,with_middleware", [("artifact", False), ("artifact", True), ("content", False)])
def test_gemini_gets_text_results_and_the_image_as_a_user_turn(tmp_path, monkeypatch, image, with_middleware):
    from langchain_google_genai import ChatGoogleGenerativeAI

    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-key-not-real")
    rules = GeminiRules()
    with StubServer(rules) as stub:
        model = ChatGoogleGenerativeAI(model="gemini-2.5-flash", google_api_key="AIza-test-key-not-real",
                                       base_url=stub.url, max_retries=0)
        tool = as_tool(mllm=planner(), generator="sketch", runs_dir=tmp_path, image=image)
        agent = create_agent(model, [tool], middleware=[image_middleware()] if with_middleware else [])
        out = agent.invoke({"messages": [("user", ASK)]})
    assert out["messages"][-1].content == "Here it is."
    assert rules.saw_image is (with_middleware or image == "content")
    assert rules.image_as_text is False  # never base64 inside the JSON function response
