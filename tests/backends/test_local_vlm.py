"""The in-process transformers backend with tiny random-weight models (no download)."""

import base64
import io

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from langchain_core.messages import HumanMessage, SystemMessage  # noqa: E402
from PIL import Image  # noqa: E402

from mllm_guidance import guide  # noqa: E402
from mllm_guidance.backends.local_vlm import LocalVLMChatModel, to_chat_turn
from mllm_guidance.backends.torch_device import pick_device  # noqa: E402
from mllm_guidance.backends.mllm import resolve_mllm  # noqa: E402
from mllm_guidance.errors import BackendError  # noqa: E402
from tests.backends.tiny_vlm import build_tiny_gemma3, build_tiny_llava  # noqa: E402


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory):
    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


def png_b64(color=(200, 10, 10)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (48, 40), color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def chat():
    return [SystemMessage("objects score"),
            HumanMessage(content=[{"type": "text", "text": "a cat ."}, {"type": "image", "base64": png_b64(), "mime_type": "image/png"}])]


@pytest.mark.parametrize("family", ["gemma", "llava"])
def test_image_and_text_in_text_and_usage_out(family, gemma_dir, llava_dir):
    path = {"gemma": gemma_dir, "llava": llava_dir}[family]
    model = LocalVLMChatModel.load(str(path), max_new_tokens=6)
    answer = model.invoke(chat())
    assert isinstance(answer.content, str)
    usage = answer.usage_metadata
    assert usage["input_tokens"] > 5 and 1 <= usage["output_tokens"] <= 6
    assert (model.device, model.dtype) == ("cpu", "float32")


def test_weights_load_once_per_process(gemma_dir):
    a = LocalVLMChatModel.load(str(gemma_dir))
    b = resolve_mllm(f"transformers:{gemma_dir}")
    assert a._model is b._model and a._processor is b._processor


def test_messages_become_chat_template_turns():
    turn = to_chat_turn(chat()[1])
    assert turn["role"] == "user" and turn["content"][0] == {"type": "text", "text": "a cat ."}
    assert turn["content"][1]["type"] == "image" and turn["content"][1]["image"].size == (48, 40)
    assert to_chat_turn(SystemMessage("x")) == {"role": "system", "content": [{"type": "text", "text": "x"}]}
    url_block = HumanMessage(content=[{"type": "image_url", "image_url": {"url": "data:image/png;base64," + png_b64()}}])
    assert to_chat_turn(url_block)["content"][0]["image"].size == (48, 40)
    with pytest.raises(BackendError, match="base64"):
        to_chat_turn(HumanMessage(content=[{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]))


def test_device_and_dtype_choice():
    assert pick_device() == ("cpu", "float32")
    assert pick_device("cuda", None)[1] in ("bfloat16", "float16")
    assert pick_device("mps") == ("mps", "float16")
    assert pick_device("cpu", "bfloat16") == ("cpu", "bfloat16")
    with pytest.raises(BackendError, match="unknown dtype"):
        pick_device("cpu", "float8")


def test_a_model_that_cannot_be_loaded(tmp_path):
    with pytest.raises(BackendError, match="cannot load .*local directory.*HF_TOKEN"):
        resolve_mllm(f"transformers:{tmp_path / 'no-such-model'}")


def test_garbage_answers_end_in_a_finished_run(gemma_dir, tmp_path):
    model = LocalVLMChatModel.load(str(gemma_dir), max_new_tokens=12)
    result = guide("A man is sitting under a tree while a bird is in the tree.", mllm=model, generator="sketch",
                   config={"seed": 0}, run_dir=tmp_path / "run")
    # place, reason and align each fail after 1 + 2 tries; the run still ends with an image
    assert [f.step for f in result.failures] == ["place", "reason", "align"]
    assert all(f.attempts == 3 for f in result.failures)
    assert result.usage.mllm_calls == 9 and result.usage.generator_calls == 1
    assert result.stop_reason == "align_failed" and result.image_path.exists()
    assert result.usage.input_tokens > 0
