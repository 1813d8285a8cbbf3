"""VQAScore's three ways: CLIP-FlanT5 from a tiny checkpoint in its published layout, a tiny local VLM,
and an OpenAI-compatible API with logprobs on a 127.0.0.1 stub."""

import json
from types import SimpleNamespace
from unittest import mock

import pytest
from PIL import Image

pytest.importorskip("transformers")

from mllm_guidance.eval.scorers import ScoreItem, build_scorers  # noqa: E402
from mllm_guidance.eval.vqascore import QUESTION, p_yes_from_logprobs  # noqa: E402
from tests.stubs import StubServer  # noqa: E402

PROMPTS = ["a red cat", "two dogs under a big green tree"]


def images():
    return [Image.new("RGB", (48, 32), (200, 30, 30)), Image.new("RGB", (32, 32), (30, 160, 40))]


def logprobs_completion(top):
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": top[0][0]},
                         "logprobs": {"content": [{"token": top[0][0], "logprob": top[0][1], "bytes": None,
                                                   "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top]}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}


def test_reading_the_first_tokens_log_probabilities_as_t2v_metrics_does():
    def completion(*top):
        entries = [SimpleNamespace(token=t, logprob=lp) for t, lp in top]
        return SimpleNamespace(choices=[SimpleNamespace(logprobs=SimpleNamespace(content=[SimpleNamespace(top_logprobs=entries)]))])

    assert p_yes_from_logprobs(completion(("Yes", -0.1), ("No", -2.4))) == pytest.approx(0.904837, abs=1e-6)
    assert p_yes_from_logprobs(completion((" no", -0.05), ("Maybe", -3.0))) == pytest.approx(1 - 0.951229, abs=1e-6)
    assert p_yes_from_logprobs(completion(("Sure", -0.1), ("Maybe", -3.0))) == 0.0
    with pytest.raises(Exception, match="no log-probabilities"):
        p_yes_from_logprobs(SimpleNamespace(choices=[SimpleNamespace(logprobs=None)]))


def test_api_vqascore_sends_t2v_metrics_request_to_an_openai_compatible_server(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    def answer(path, body):
        text = body["messages"][0]["content"][0]["text"]
        return 200, logprobs_completion([("Yes", -0.2), ("No", -1.7)] if "cat" in text else [("No", -0.3), ("Yes", -1.4)])

    with StubServer(answer) as stub:
        scorer = build_scorers(["vqascore"], vqascore_model="openai:qwen2.5-vl", vqascore_base_url=stub.url + "/v1")[0]
        got = scorer.score([ScoreItem(p, im) for p, im in zip(PROMPTS, images(), strict=True)])
        bodies = [body for _, _, body in stub.requests]
    assert got == [{"vqascore": pytest.approx(0.818731, abs=1e-6)}, {"vqascore": pytest.approx(0.246597, abs=1e-6)}]
    for body in bodies:
        assert body["model"] == "qwen2.5-vl" and body["logprobs"] is True and body["top_logprobs"] == 2
        assert body["max_tokens"] == 1 and "temperature" not in body and len(body["messages"]) == 1
        text, image = body["messages"][0]["content"]  # the question first, then the image, as theirs
        assert text["text"] in {QUESTION.format(p) for p in PROMPTS}
        assert image["image_url"]["url"].startswith("data:image/png;base64,")
    assert text["text"].startswith('Does this figure show "') and text["text"].endswith('"? Please answer Yes or No.')
    assert scorer.settings["compare_with_paper"] is False


def test_api_vqascore_without_a_key_or_server_fails_before_scoring(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(Exception, match="OPENAI_API_KEY"):
        build_scorers(["vqascore"], vqascore_model="openai:gpt-4o")
    with pytest.raises(Exception, match="transformers:<id or path>"):
        build_scorers(["vqascore"], vqascore_model="llava")


@pytest.fixture(scope="module")
def tiny_gemma_with_yes(tmp_path_factory):
    from tests.backends import tiny_vlm

    with mock.patch.object(tiny_vlm, "WORDS", tiny_vlm.WORDS + ["Yes", "No", "Does", "this", "figure", "show"]):
        return str(tiny_vlm.build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma-yes")))


def test_local_vlm_vqascore_is_the_first_answer_tokens_probability_of_yes(tiny_gemma_with_yes):
    import torch

    scorer = build_scorers(["vqascore"], vqascore_model=f"transformers:{tiny_gemma_with_yes}")[0]
    got = [m["vqascore"] for m in scorer.score([ScoreItem(p, im) for p, im in zip(PROMPTS, images(), strict=True)])]
    backend = scorer.backend
    for p, image, value in zip(PROMPTS, images(), got, strict=True):
        # t2v_metrics' way: greedy generation of one token, the softmax of its scores at "Yes"
        chat = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": QUESTION.format(p)}]}]
        inputs = backend.processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=True, return_dict=True,
                                                       return_tensors="pt")
        with torch.no_grad():
            out = backend.model.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True, return_dict_in_generate=True)
        expected = float(out.scores[0][0].float().softmax(-1)[backend.yes_id])
        assert 0 < value < 1 and value == pytest.approx(expected, rel=1e-4)
    assert got[0] != got[1] and scorer.settings["question"] == QUESTION


def test_local_vlm_without_a_yes_token_is_refused(tmp_path):
    from tests.backends.tiny_vlm import build_tiny_gemma3

    with pytest.raises(Exception, match="no token for 'Yes'"):
        build_scorers(["vqascore"], vqascore_model=f"transformers:{build_tiny_gemma3(tmp_path / 'g')}")


# -- CLIP-FlanT5 from a tiny checkpoint laid out as zhiqiulin/clip-flant5-xxl -------------------------------

T5_WORDS = ["▁Yes", "▁No", "▁a", "▁red", "▁cat", "▁two", "▁dogs", "▁under", "▁big", "▁green", "▁tree", "▁Does", "▁this",
            "▁figure", "▁show", "▁Please", "▁answer", "▁yes", "▁or", "▁no", "▁USER", "▁ASSISTANT", "▁A", "▁chat"]


@pytest.fixture(scope="module")
def tiny_clip_flant5(tmp_path_factory):
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, T5Config, T5ForConditionalGeneration, T5Tokenizer

    root = tmp_path_factory.mktemp("tiny-clip-flant5")
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(w, -1.0) for w in T5_WORDS]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ,.'\"?:▁\n"]
    T5Tokenizer(vocab=vocab, extra_ids=0).save_pretrained(root / "tokenizer")
    torch.manual_seed(0)
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=24, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                                            image_size=32, patch_size=8))
    clip.save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "clip")
    config = T5Config(vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=4,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    T5ForConditionalGeneration(config).save_pretrained(root / "model")
    weights = load_file(root / "model" / "model.safetensors")
    weights.update({"mm_projector.0.weight": torch.randn(32, 24) * 0.2, "mm_projector.0.bias": torch.zeros(32),
                    "mm_projector.2.weight": torch.randn(32, 32) * 0.2, "mm_projector.2.bias": torch.zeros(32)})
    save_file(weights, root / "model" / "model.safetensors", metadata={"format": "pt"})  # the vision tower left out
    saved = json.loads((root / "model" / "config.json").read_text())
    saved.update(model_type="clip_t5", architectures=["CLIPT5ForConditionalGeneration"], mm_vision_tower=str(root / "clip"),
                 mm_hidden_size=24, mm_projector_type="mlp2x_gelu", mm_vision_select_layer=-2, mm_vision_select_feature="patch")
    (root / "model" / "config.json").write_text(json.dumps(saved))
    return f"clip-flant5:{root / 'model'},{root / 'tokenizer'}", root


def test_clip_flant5_scores_yes_after_its_chat_prompt_and_batches_exactly(tiny_clip_flant5):
    import torch
    from transformers import CLIPVisionModel

    spec, root = tiny_clip_flant5
    scorer = build_scorers(["vqascore"], vqascore_model=spec)[0]
    backend = scorer.backend
    items = [ScoreItem(p, im) for p, im in zip(PROMPTS, images(), strict=True)]
    together = [m["vqascore"] for m in scorer.score(items)]
    alone = [scorer.score([item])[0]["vqascore"] for item in items]
    assert together == pytest.approx(alone, abs=1e-6) and all(0 < v < 1 for v in together) and together[0] != together[1]
    # the vision tower, absent from the checkpoint, came from mm_vision_tower, as t2v_metrics loads it
    from safetensors.torch import load_file

    saved = load_file(root / "model" / "model.safetensors")
    state = backend.model.state_dict()
    for key in ("mm_projector.0.weight", "mm_projector.2.weight", "shared.weight", "encoder.block.0.layer.0.SelfAttention.q.weight"):
        assert torch.equal(state[key], saved[key]), key  # the checkpoint's projector and T5, not a fresh init
    reference = CLIPVisionModel.from_pretrained(root / "clip")
    assert torch.equal(backend.model.vision_tower.vision_tower.embeddings.patch_embedding.weight,
                       reference.embeddings.patch_embedding.weight)
    # the prompt: system, USER, the image, the question, ASSISTANT; each chunk tokenized alone (ending in </s>)
    ids = backend.input_ids("a red cat")
    assert ids.count(-200) == 1 and ids[ids.index(-200) - 1] == 1 and ids[-1] == 1
    tokens = backend.tokenizer.convert_ids_to_tokens(ids[ids.index(-200) + 1 :])
    assert "".join(tokens).replace("▁", " ").strip() == 'Does this figure show "a red cat"? Please answer yes or no. ASSISTANT:</s>'
    # the score is exp(-mean CE of "Yes</s>"): T5's own loss on the same inputs gives it back
    labels = torch.tensor([backend.tokenizer("Yes").input_ids])
    assert labels.tolist() == [[3, 1]]
    with torch.no_grad():
        pixels = backend.pixels([images()[0]])
        hidden = backend.model.vision_tower.vision_tower(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        at = ids.index(-200)
        embed = backend.model.get_input_embeddings()
        row = torch.cat([embed(torch.tensor(ids[:at])), backend.model.mm_projector(hidden)[0], embed(torch.tensor(ids[at + 1 :]))])
        loss = backend.model(inputs_embeds=row[None], labels=labels).loss
    assert together[0] == pytest.approx(float((-loss).exp()), abs=1e-6)
    assert scorer.settings["compare_with_paper"] is True and "10d549b" in scorer.settings["way"]


def test_clip_flant5_pads_a_wide_image_to_a_square_with_the_mean_colour(tiny_clip_flant5):
    spec, _ = tiny_clip_flant5
    backend = build_scorers(["vqascore"], vqascore_model=spec)[0].backend
    assert build_scorers(["vqascore"], vqascore_model=spec)[0].backend.model is backend.model  # loaded once per process
    wide = Image.new("RGB", (64, 32), (0, 0, 0))
    square = Image.new("RGB", (64, 64), tuple(int(x * 255) for x in backend.processor.image_mean))
    square.paste(wide, (0, 16))
    assert backend.pixels([wide]).tolist() == backend.pixels([square]).tolist()
