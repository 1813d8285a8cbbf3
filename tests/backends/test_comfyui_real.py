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

    from tests.backends.comfyui_real import interface_only

    real = {k: interface_only(v) for k, v in httpx.get(server.url + "/object_info", timeout=30).json().items()}
    stub = ComfyUIStub(checkpoints=["tiny-sd15.safetensors"], gligen=["tiny-gligen.safetensors"]).object_info()
    for node in NODES:
        assert stub[node]["input"]["required"] == real[node]["input"]["required"], node
        assert stub[node]["output"] == real[node]["output"] and stub[node]["output_node"] == real[node]["output_node"]


def test_generate_on_the_command_line_through_a_real_comfyui(server, tmp_path, capsys):
    from mllm_guidance.cli import main
    from tests.cli.test_cli import PROMPT, RECORDING

    code = main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--generator", f"comfyui:{server.url}",
                 "--size", "64", "--steps", "2", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["rounds"] and (tmp_path / "run" / "round-1.png").exists()


@pytest.fixture(scope="module")
def server_with_nodes(tmp_path_factory):
    """A real ComfyUI with this repository's node pack linked into its custom_nodes."""
    base = Path(os.environ.get("COMFYUI_TEST_BASE") or tmp_path_factory.mktemp("comfyui-base"))
    build_models(COMFY, base)
    pack = base / "custom_nodes" / "mllm_guidance_nodes"
    pack.parent.mkdir(parents=True, exist_ok=True)
    if not pack.exists():
        pack.symlink_to(Path(__file__).resolve().parents[2] / "comfyui_nodes" / "mllm_guidance_nodes")
    with RealComfyUI(COMFY, base) as running:
        yield running


def test_the_node_pack_loads_and_runs_in_a_real_comfyui(server_with_nodes):
    import httpx

    from mllm_guidance.backends.comfyui import ComfyUIGenerator
    from tests.cli.test_cli import PROMPT, RECORDING

    info = httpx.get(server_with_nodes.url + "/object_info", timeout=30).json()
    assert {"MLLMPlanLayout", "MLLMJudge", "MLLMAlign", "MLLMGuide"} <= set(info)
    assert info["MLLMGuide"]["display_name"] == "MLLM guide"
    mllm = f"replay:{RECORDING}"
    ckpt = ["1", 0]
    workflow = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
        "2": {"class_type": "GLIGENLoader", "inputs": {"gligen_name": "tiny-gligen.safetensors"}},
        "3": {"class_type": "MLLMGuide", "inputs": {
            "model": ckpt, "clip": ["1", 1], "vae": ["1", 2], "gligen_textbox_model": ["2", 0], "prompt": PROMPT,
            "mllm": mllm, "seed": 3, "steps": 1, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "width": 64, "height": 64, "max_rounds": 3}},
        "4": {"class_type": "MLLMJudge", "inputs": {"image": ["3", 0], "prompt": PROMPT, "mllm": mllm}},
        "5": {"class_type": "MLLMAlign", "inputs": {"image": ["3", 0], "prompt": PROMPT, "layout_json": ["3", 1], "mllm": mllm}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["1", 1]}},
        "7": {"class_type": "MLLMPlanLayout", "inputs": {
            "conditioning": ["6", 0], "clip": ["1", 1], "gligen_textbox_model": ["2", 0], "prompt": PROMPT, "mllm": mllm,
            "width": 64, "height": 64, "correct_rounds": 0}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "guided"}},
        "9": {"class_type": "PreviewAny", "inputs": {"source": ["4", 1]}},
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["5", 0]}},
        "11": {"class_type": "PreviewAny", "inputs": {"source": ["7", 1]}},
    }
    gen = ComfyUIGenerator(server_with_nodes.url, timeout=500)
    image, _ = gen.run(workflow)
    assert image.size == (64, 64)
    history = httpx.get(server_with_nodes.url + "/history", timeout=30).json()
    outputs = next(iter(history.values()))["outputs"]
    texts = {node: out.get("text") for node, out in outputs.items() if "text" in out}
    assert texts["9"][0].strip()  # the judge's reasoning
    assert json.loads(texts["11"][0]) and json.loads(texts["10"][0])  # plan and align gave layouts
