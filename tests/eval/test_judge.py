"""The MLLM judges: T2I-CompBench's protocol by category, retries, repeats, scales, temperature."""

import json

import pytest
from PIL import Image

from mllm_guidance.eval.judge import (CompBenchJudge, ReasonJudge, apply_scale, judge_prompts, prompt_set_version,
                                      with_temperature)
from mllm_guidance.eval.scorers import ScoreItem, score_records
from tests.fakes import RecordingChatModel, score

PROMPT = "A man is sitting under a tree while a bird is in the tree."


def item(category=None, prompt=PROMPT):
    return ScoreItem(prompt, Image.new("RGB", (16, 16), (10, 120, 30)), category)


def answer(n, why="fine"):
    return json.dumps({"score": n, "explanation": why})


def texts(message):
    return [b["text"] for b in message.content if b.get("type") == "text"]


def test_the_complex_prompt_goes_in_one_turn_image_first_and_its_json_score_is_read():
    judge = CompBenchJudge(RecordingChatModel(replies={"judge": ["```json\n" + answer(4) + "\n```"]}), concurrency=1)
    (metrics, details), = judge.score_items([item()])  # no category: complex (RLS-300 and user datasets)
    assert metrics == {"mllm": 0.8, "mllm_raw": 4.0}
    assert details["category"] == "complex" and details["scores"] == [4] and details["unscored"] == 0 and details["calls"] == 1
    (step, sent), = judge.model.calls
    assert step == "judge" and len(sent) == 1 and sent[0].type == "human"
    blocks = sent[0].content
    assert blocks[0]["type"] == "image" and blocks[0]["mime_type"] == "image/png" and blocks[0]["base64"]
    text = texts(sent[0])[0]
    assert text == judge_prompts("gpt4v", "complex").score_text(PROMPT)
    assert text.startswith("You are my assistant to evaluate the correspondence of the image to a given text prompt.")
    assert f'evaluate how well the image aligns with the text prompt: "{PROMPT}"' in text and "{prompt_name}" not in text
    assert "JSON format with the following keys: score (e.g., 2), explanation (within 20 words)." in text


@pytest.mark.parametrize("category, opening", [
    ("spatial", "You are my assistant to identify objects and their spatial layout in the image."),
    ("3d-spatial", "You are my assistant to identify objects and their spatial layout in the image."),
    ("non-spatial", "You are my assistant to identify the actions, events, objects and their relationships in the image."),
    ("complex", "You are my assistant to evaluate the correspondence of the image to a given text prompt."),
])
def test_each_category_gets_its_instruction_and_as_run_sends_the_spatial_one(category, opening):
    judge = CompBenchJudge(RecordingChatModel(replies={"judge": [answer(5)]}))
    judge.score_items([item(category)])
    assert texts(judge.model.calls[0][1][0])[0].startswith(opening)
    as_run = CompBenchJudge(RecordingChatModel(replies={"judge": [answer(5)]}), protocol="gpt4v-as-run")
    as_run.score_items([item(category)])
    assert texts(as_run.model.calls[0][1][0])[0] == judge_prompts("gpt4v", "spatial").score_text(PROMPT)


def test_the_category_override_wins_over_the_datasets():
    judge = CompBenchJudge(RecordingChatModel(replies={"judge": [answer(5)]}), category="non-spatial")
    (_, details), = judge.score_items([item("spatial")])
    assert details["category"] == "non-spatial" and judge.settings["category_override"] == "non-spatial"


def test_cot_describes_then_scores_in_two_turns():
    judge = CompBenchJudge(RecordingChatModel(replies={"judge-describe": ["A man sits under a tree; a bird sits on a branch."],
                                                       "judge": [answer(5)]}), protocol="cot")
    (metrics, details), = judge.score_items([item("complex")])
    assert metrics["mllm_raw"] == 5 and details["calls"] == 2
    (s1, first), (s2, second) = judge.model.calls
    assert (s1, s2) == ("judge-describe", "judge")
    assert first[0].content[0]["type"] == "image" and texts(first[0])[0].startswith(
        "You are my assistant to evaluate the correspondence of the image to a given text prompt.")
    assert "Briefly describe the image within 50 words" in texts(first[0])[0] and "ASSISTANT:" not in texts(first[0])[0]
    assert [m.type for m in second] == ["human", "ai", "human"]
    assert second[1].content == "A man sits under a tree; a bird sits on a branch."
    assert texts(second[2])[0].startswith("According to the image and your previous answer, evaluate how well the image aligns")
    assert f'"{PROMPT}"' in texts(second[2])[0] and "Give a score from 1 to 5" in texts(second[2])[0]


def test_unreadable_answers_are_asked_again_with_the_reason_then_left_unscored_and_counted():
    replies = ["no idea", answer(85), answer(3), "???", "??", "?"]
    judge = CompBenchJudge(RecordingChatModel(replies={"judge": replies}), concurrency=1, parse_retries=2)
    (first, d1), (second, d2) = judge.score_items([item(), item()])
    assert first == {"mllm": 0.6, "mllm_raw": 3.0} and d1["calls"] == 3
    assert second == {} and d2["scores"] == [None] and d2["unscored"] == 1 and d2["calls"] == 3
    retry = judge.model.calls[2][1]
    assert [m.type for m in retry] == ["human", "ai", "human", "ai", "human"]
    assert "outside 1..5" in retry[-1].content and "JSON format with the keys score" in retry[-1].content


def test_repeats_are_averaged_with_their_spread_on_every_scale():
    for scale, expected in (("raw", 4.0), ("s/5", 0.8), ("(s-1)/4", 0.75), ("pass@5", 1 / 3)):
        judge = CompBenchJudge(RecordingChatModel(replies={"judge": [answer(5), answer(4), answer(3)]}), repeats=3, scale=scale)
        (metrics, details), = judge.score_items([item()])
        assert metrics["mllm"] == pytest.approx(expected) and metrics["mllm_raw"] == 4.0
        assert details["scores"] == [5, 4, 3] and details["spread"] == pytest.approx(0.8165, abs=1e-4) and details["scale"] == scale
    with pytest.raises(Exception, match="judge scale"):
        CompBenchJudge(RecordingChatModel(replies={}), scale="score/5")


def test_apply_scale():
    assert apply_scale([1, 5], "raw") == 3 and apply_scale([1, 5], "s/5") == 0.6
    assert apply_scale([1, 5], "(s-1)/4") == 0.5 and apply_scale([1, 5], "pass@5") == 0.5


def test_changing_the_scale_rescales_stored_answers_without_asking_again(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    records = [{"key": "a", "status": "ok", "prompt": "a cat", "image": "a.png", "dataset": "spatial", "category": "spatial"}]
    model = RecordingChatModel(replies={"judge": [answer(4)]})
    score_records(tmp_path, records, [CompBenchJudge(model)])
    assert records[0]["metrics"]["mllm"] == 0.8 and records[0]["scoring"]["mllm"]["category"] == "spatial"
    score_records(tmp_path, records, [CompBenchJudge(model, scale="(s-1)/4")])
    assert records[0]["metrics"]["mllm"] == 0.75 and len(model.calls) == 1
    assert records[0]["scoring"]["mllm"]["settings"]["prompt_version"] == prompt_set_version()


def test_temperature_is_set_where_the_provider_has_it():
    pytest.importorskip("langchain_openai")
    from mllm_guidance.backends.mllm import resolve_mllm
    from tests.stubs import StubServer, openai_completion

    with StubServer(lambda path, body: (200, openai_completion(answer(5)))) as stub:
        judge = CompBenchJudge("openai:gpt-4o", mllm_options={"base_url": stub.url + "/v1"})
        judge.score_items([item()])
        body = stub.requests[-1][2]
    assert body["temperature"] == 0 and body["model"] == "gpt-4o" and judge.settings["temperature"] == 0.0
    assert judge.settings["model"] == "openai:gpt-4o"
    content = body["messages"][0]["content"]
    assert content[0]["type"] == "image_url" and content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    model, t = with_temperature(resolve_mllm("openai:gpt-4o", base_url="http://127.0.0.1:9/v1"), None)
    assert t is None  # not set by us: the provider's default
    _, t = with_temperature(RecordingChatModel(replies={}), 0.0)
    assert t is None  # a model without the setting says so


def test_reason_rubric_judge_keeps_the_guides_prompt_under_its_own_name():
    judge = ReasonJudge(RecordingChatModel(replies={"reason": [score(4), "no idea", score(2), "???", "??", "?"]}), concurrency=1)
    assert judge.name == "mllm-reason"
    results = judge.score([item(), item(), item()])
    assert results == [{"mllm_reason": 0.8, "mllm_reason_raw": 4.0}, {"mllm_reason": 0.4, "mllm_reason_raw": 2.0}, {}]
    sent = judge.model.calls[0][1]
    assert "5: the image depicts all elements and all" in sent[0].content and sent[1].content[1]["type"] == "image"
