"""The ``comfyui:`` generator against a REAL ComfyUI server on the CPU, with tiny checkpoints built for
it (``comfyui_real.py``). Skipped unless ``COMFYUI_DIR`` names a ComfyUI checkout (CI cannot fetch
one); the stand-in tests (``test_comfyui.py``) run everywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.backends.comfyui_real import RealComfyUI, build_models, comfyui_dir

COMFY = comfyui_dir()
pytestmark = pytest.mark.skipif(COMFY is None, reason="set COMFYUI_DIR to a ComfyUI checkout to run a real server")
NODES = ("CheckpointLoaderSimple", "CLIPTextEncode", "GLIGENLoader", "GLIGENTextBoxApply", "EmptyLatentImage",
         "KSampler", "VAEDecode", "SaveImage")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = Path(os.environ.get("COMFYUI_TEST_BASE") or tmp_path_factory.mktemp("comfyui-base"))
    build_models(COMFY, base)
    with RealComfyUI(COMFY, base) as running:
        yield running


def test_renders_with_gligen_boxes_on_a_real_server(server):
    from mllm_guidance.backends.comfyui import ComfyUIGenerator
    from mllm_guidance.backends.generator import GenerationRequest
    from mllm_guidance.layout import Layout

    seen = []
    gen = ComfyUIGenerator(server.url, on_progress=lambda done, total: seen.append((done, total)))
    layout = Layout.from_pairs([("a red ball", [0.0, 0.0, 0.5, 0.5]), ("a blue cube", [0.5, 0.5, 1.0, 1.0])])
    out = gen.generate(GenerationRequest(prompt="a ball and a cube", layout=layout, seed=3, width=64, height=64, steps=2))
    assert out.image.size == (64, 64) and seen[-1] == (2, 2)
    assert gen.checkpoint is None and gen._choices  # the only checkpoint and GLIGEN file, read from /object_info


def test_real_validation_errors_are_one_line(server):
    from mllm_guidance.backends.comfyui import ComfyUIGenerator
    from mllm_guidance.backends.generator import GenerationRequest
    from mllm_guidance.errors import BackendError

    gen = ComfyUIGenerator(f"{server.url}?checkpoint=missing.safetensors")
    with pytest.raises(BackendError) as caught:
        gen.generate(GenerationRequest(prompt="x", layout=None, seed=1, width=64, height=64, steps=1))
    message = str(caught.value)
    assert "\n" not in message and "node 1 (CheckpointLoaderSimple): Value not in list" in message, message


def test_the_stand_ins_node_definitions_are_the_real_ones(server):
    import httpx

    from tests.comfyui_stub import ComfyUIStub

    real = httpx.get(server.url + "/object_info", timeout=30).json()
    stub = ComfyUIStub(checkpoints=["tiny-sd15.safetensors"], gligen=["tiny-gligen.safetensors"]).object_info()
    for node in NODES:
        assert stub[node]["input"]["required"] == real[node]["input"]["required"], node
        assert stub[node]["output"] == real[node]["output"] and stub[node]["output_node"] == real[node]["output_node"]


def test_generate_on_the_command_line_through_a_real_comfyui(server, tmp_path, capsys):
    from mllm_guidance.cli import main
    from tests.test_cli import PROMPT, RECORDING

    code = main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--generator", f"comfyui:{server.url}",
                 "--size", "64", "--steps", "2", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["rounds"] and (tmp_path / "run" / "round-1.png").exists()
