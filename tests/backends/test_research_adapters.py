"""InstanceDiffusion and Rich-context L2I adapters against stand-in repositories whose modules record
exactly what they were called with (the real ones need their checkouts, checkpoints and a GPU)."""

import json
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mllm_guidance.backends.generator import GenerationRequest
from mllm_guidance.backends.instancediffusion import (
    InstanceDiffusionGenerator, from_instance_box, instancediffusion_input, to_instance_box,
)
from mllm_guidance.backends.rich_context import RichContextGenerator, from_rich_context_box, rich_context_input, to_rich_context_box
from mllm_guidance.errors import BackendError
from mllm_guidance.layout import Box, Layout

LAYOUT = Layout.from_pairs([("a gray cat on a rock", [0.0, 0.1, 0.35, 0.55]), ("a dog", [0.65, 0.2, 1.0, 0.7])])

INSTANCE_STANDIN = '''
import os
from types import SimpleNamespace
import numpy as np
from PIL import Image
CALLS = []
args = None

def load_model_ckpt(ckpt, args, device):
    CALLS.append(("load", ckpt, device, os.getcwd()))
    return SimpleNamespace(), "autoencoder", "text_encoder", "diffusion", {"grounding_tokenizer_input": {"target": "x"}}

def create_clip_pretrain_model():
    return "clip", "processor"

def instantiate_from_config(config):
    return ("grounding", config)

def rescale_box(bbox, width, height):
    return [bbox[0] / width, bbox[1] / height, (bbox[0] + bbox[2]) / width, (bbox[1] + bbox[3]) / height]

def get_point_from_box(bbox):
    return [(bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0]

def sample_random_points_from_mask(mask, k):
    return [[0, 0]] * k

def sample_sparse_points_from_mask(mask, k):
    return None

def convert_points(points, info):
    return points

def resize(array, shape):
    return np.zeros(shape)

def run(meta, model, autoencoder, text_encoder, diffusion, clip_model, clip_processor, config, grounding, noise, guidance_scale=None):
    CALLS.append(("run", meta, noise, guidance_scale, args.negative_prompt, args.mis, os.getcwd()))
    folder = os.path.join(args.output, meta["save_folder_name"])
    os.makedirs(folder, exist_ok=True)
    Image.new("RGB", (512, 512), (1, 2, 3)).save(os.path.join(folder, "0.png"))
'''

RICH_STANDIN = '''
import os
from PIL import Image
CALLS = []
NEGATIVE_PROMPTS = "their negative prompts"

class Pipe:
    def __call__(self, **kwargs):
        CALLS.append(("call", kwargs, os.getcwd()))
        return ([Image.new("RGB", (512, 512), (4, 5, 6))],)

def get_pipe(version, config):
    CALLS.append(("get_pipe", version, dict(config), os.getcwd()))
    return Pipe(), None, None

def load_ckpt(path, pipe):
    CALLS.append(("load_ckpt", path))
'''


@pytest.fixture
def instance_repo(tmp_path, monkeypatch):
    repo = tmp_path / "InstanceDiffusion"
    (repo / "pretrained").mkdir(parents=True)
    (repo / "pretrained" / "instancediffusion_sd15.pth").write_bytes(b"weights")
    (repo / "inference.py").write_text(textwrap.dedent(INSTANCE_STANDIN))
    monkeypatch.delitem(sys.modules, "inference", raising=False)
    monkeypatch.setenv("INSTANCEDIFFUSION_REPO", str(repo))
    yield repo
    sys.modules.pop("inference", None)


@pytest.fixture
def rich_repo(tmp_path, monkeypatch):
    repo = tmp_path / "rich_context_L2I"
    (repo / "configs").mkdir(parents=True)
    (repo / "configs" / "layout_sdxl.yaml").write_text("unet:\n  params:\n    pretrained_model_name_or_path: init\n")
    (repo / "rich_context_sdxl_e580.pt").write_bytes(b"weights")
    (repo / "inference_on_dataset.py").write_text(textwrap.dedent(RICH_STANDIN))
    monkeypatch.delitem(sys.modules, "inference_on_dataset", raising=False)
    yield repo
    sys.modules.pop("inference_on_dataset", None)


def test_instancediffusion_json_input_is_exact():
    spec, notes = instancediffusion_input("a cat and a dog", LAYOUT)
    assert spec == {"caption": "a cat and a dog", "width": 512, "height": 512, "annos": [
        {"bbox": [0, 51, 179, 231], "mask": [], "category_name": "", "caption": "a gray cat on a rock"},
        {"bbox": [333, 102, 179, 256], "mask": [], "category_name": "", "caption": "a dog"}]}
    assert notes == [] and json.dumps(spec)
    whole, notes = instancediffusion_input("a cat", Layout())
    assert whole["annos"][0]["bbox"] == [0, 0, 512, 512] and whole["annos"][0]["caption"] == "a cat" and notes


def test_instancediffusion_calls_their_code_in_process(instance_repo, tmp_path):
    gen = InstanceDiffusionGenerator(device="cpu")
    out = gen.generate(GenerationRequest(prompt="a cat and a dog", layout=LAYOUT, seed=7, width=1024, height=1024, negative_prompt="blurry"))
    import inference

    run = inference.CALLS[-1]
    assert inference.CALLS[0][1] == str(instance_repo / "pretrained" / "instancediffusion_sd15.pth")
    assert inference.CALLS[0][3] == str(instance_repo)  # their relative paths resolve in the clone
    _, meta, noise, guidance, negative, mis, cwd = run
    assert meta["phrases"] == ["a gray cat on a rock", "a dog"] and meta["prompt"] == "a cat and a dog"
    for got, obj in zip(meta["locations"], LAYOUT.objects):
        assert np.allclose(got, obj.box.as_list(), atol=1 / 512)
    assert meta["alpha_type"] == [0.75, 0.0, 0.25] and len(meta["points"]) == 2
    assert tuple(noise.shape) == (1, 4, 64, 64) and guidance == 7.5 and negative == "blurry" and mis == 0.36
    assert cwd == str(instance_repo)
    assert out.image.size == (512, 512) and "renders on its 512x512 canvas" in out.notes[0]
    again = gen.generate(GenerationRequest(prompt="a cat and a dog", layout=LAYOUT, seed=7, width=512, height=512))
    assert again.notes == [] and (inference.CALLS[-1][2] == noise).all()  # same seed, same starting noise


def test_instancediffusion_missing_code_or_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("INSTANCEDIFFUSION_REPO", raising=False)
    with pytest.raises(BackendError, match="git clone https://github.com/frank-xwang/InstanceDiffusion .*INSTANCEDIFFUSION_REPO"):
        InstanceDiffusionGenerator()
    (tmp_path / "clone").mkdir()
    with pytest.raises(BackendError, match="checkpoint .*instancediffusion_sd15.pth is missing"):
        InstanceDiffusionGenerator(repo=str(tmp_path / "clone"))
    with pytest.raises(BackendError, match="is not a checkout"):
        InstanceDiffusionGenerator(repo=str(tmp_path / "nowhere"))


def test_rich_context_calls_their_pipeline_with_pixel_corners(rich_repo):
    gen = RichContextGenerator(repo=str(rich_repo))
    out = gen.generate(GenerationRequest(prompt="a cat and a dog", layout=LAYOUT, seed=3, width=512, height=512, steps=20))
    import inference_on_dataset as rc

    assert rc.CALLS[0][:2] == ("get_pipe", "sdxl") and rc.CALLS[0][3] == str(rich_repo)
    assert rc.CALLS[1] == ("load_ckpt", str(rich_repo / "rich_context_sdxl_e580.pt"))
    _, kwargs, cwd = rc.CALLS[-1]
    assert isinstance(kwargs["boxes"], np.ndarray) and kwargs["boxes"].tolist() == [[0, 51, 179, 282], [333, 102, 512, 358]]
    assert kwargs["labels"] == ["a gray cat on a rock", "a dog"] and (kwargs["height"], kwargs["width"]) == (512, 512)
    assert kwargs["negative_prompt"] == "their negative prompts" and kwargs["scheduled_sampling_beta"] == 1.0
    assert kwargs["num_inference_steps"] == 20 and kwargs["guidance_scale"] == 5.0
    assert kwargs["generator"].initial_seed() == 3 and cwd == str(rich_repo)
    assert out.image.getpixel((0, 0)) == (4, 5, 6) and out.notes == []


def test_rich_context_empty_layout_and_missing_code(rich_repo, monkeypatch):
    boxes, labels, notes = rich_context_input("a quiet street", Layout())
    assert boxes.tolist() == [[0, 0, 512, 512]] and labels == ["a quiet street"] and notes
    monkeypatch.delenv("RICH_CONTEXT_L2I_REPO", raising=False)
    with pytest.raises(BackendError, match="git clone https://github.com/cplusx/rich_context_L2I .*RICH_CONTEXT_L2I_REPO"):
        RichContextGenerator()


@st.composite
def boxes(draw):
    x1 = draw(st.floats(0.0, 0.9))
    y1 = draw(st.floats(0.0, 0.9))
    return Box.of([x1, y1, draw(st.floats(x1 + 0.01, 1.0)), draw(st.floats(y1 + 0.01, 1.0))])


@given(boxes(), st.integers(64, 2048), st.integers(64, 2048))
def test_instance_boxes_round_trip(box, w, h):
    xywh = to_instance_box(box, w, h)
    assert all(isinstance(v, int) for v in xywh) and xywh[2] >= 1 and xywh[3] >= 1
    assert from_instance_box(xywh, w, h).distance(box) <= 1 / min(w, h) + 1e-9


@given(boxes())
def test_rich_context_boxes_round_trip(box):
    corners = to_rich_context_box(box)
    assert 0 <= corners[0] < corners[2] <= 512 and 0 <= corners[1] < corners[3] <= 512
    assert from_rich_context_box(corners).distance(box) <= 1 / 512 + 1e-9


@given(boxes())
def test_gligen_backends_take_normalized_corners_as_they_are(box):
    from mllm_guidance.backends.grounding import grounding_inputs

    class Tok:
        model_max_length = 77

        def __call__(self, text, add_special_tokens=False):
            return type("T", (), {"input_ids": text.split()})()

    phrases, coords, _ = grounding_inputs(Layout.from_pairs([("a cat", box.as_list())]), [Tok()])
    assert coords == [box.as_list()] and phrases == ["a cat"]
