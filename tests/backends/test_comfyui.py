"""The ``comfyui:`` generator against a ComfyUI stand-in that validates workflows with ComfyUI's own
node definitions (``tests/comfyui_stub.py`` says why no real ComfyUI runs here)."""

from __future__ import annotations

import json

import pytest

from mllm_guidance.backends.comfyui import ComfyUIGenerator, fill_workflow, gligen_box, split_spec_url
from mllm_guidance.backends.generator import GenerationRequest, render
from mllm_guidance.backends.registry import create_generator
from mllm_guidance.errors import BackendError, ConfigError
from mllm_guidance.layout import Layout
from tests.comfyui_stub import ComfyUIStub

LAYOUT = Layout.from_pairs([("a red ball", [0.0, 0.0, 0.5, 0.5]), ("a blue cube", [0.5, 0.5, 1.0, 1.0])])


def request(layout=LAYOUT, **kw) -> GenerationRequest:
    return GenerationRequest(prompt="a ball and a cube", layout=layout, seed=7, width=64, height=64, steps=3, **kw)


def classes(workflow: dict) -> list[str]:
    return [node["class_type"] for node in workflow.values()]


def test_default_workflow_renders_through_the_server_with_gligen_boxes():
    seen = []
    with ComfyUIStub() as stub:
        gen = create_generator(f"comfyui:{stub.url}", on_progress=lambda done, total: seen.append((done, total)))
        out = render(gen, request())
    workflow = stub.prompts[0]["prompt"]
    assert classes(workflow).count("GLIGENTextBoxApply") == 2 and "GLIGENLoader" in classes(workflow)
    sampler = next(n for n in workflow.values() if n["class_type"] == "KSampler")["inputs"]
    assert sampler["seed"] == 7 and sampler["steps"] == 3
    boxes = {n["inputs"]["text"]: n["inputs"] for n in workflow.values() if n["class_type"] == "GLIGENTextBoxApply"}
    assert {k: boxes["a blue cube"][k] for k in ("x", "y", "width", "height")} == {"x": 32, "y": 32, "width": 32, "height": 32}
    image = out.image
    assert image.size == (64, 64) and image.getpixel((10, 10)) == (255, 255, 255) and image.getpixel((50, 10)) == (60, 60, 60)
    assert image.getpixel((50, 50)) == (255, 255, 255)  # both boxes reached the sampler through the chain
    assert seen == [(1, 3), (2, 3), (3, 3)] and "ComfyUI sampled 3 steps" in out.notes


def test_without_boxes_no_gligen_nodes_are_sent():
    with ComfyUIStub() as stub:
        ComfyUIGenerator(stub.url).generate(request(layout=None))
    assert "GLIGENLoader" not in classes(stub.prompts[0]["prompt"])


def test_validation_errors_come_back_as_one_line():
    with ComfyUIStub() as stub:
        gen = ComfyUIGenerator(f"{stub.url}?checkpoint=sd_xl_base.safetensors&steps=0")
        with pytest.raises(BackendError) as caught:
            gen.generate(GenerationRequest(prompt="x", layout=LAYOUT, seed=1, width=64, height=64, steps=None))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("ComfyUI refused the workflow: Prompt outputs failed validation")
    assert "node 1 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'sd_xl_base.safetensors' not in" in message
    assert "node 6 (KSampler): Value 0 smaller than min of 1: steps" in message  # ?steps=0 reached the sampler
    assert not stub.prompts


def test_files_are_chosen_from_the_server_or_asked_for():
    with ComfyUIStub(checkpoints=["a.safetensors", "b.safetensors"]) as stub:
        with pytest.raises(ConfigError, match=r"choose the checkpoint file \(\?checkpoint=NAME .*a.safetensors, b.safetensors"):
            ComfyUIGenerator(stub.url).generate(request())
        ComfyUIGenerator(stub.url, checkpoint="b.safetensors").generate(request())
    loader = stub.prompts[0]["prompt"]["1"]["inputs"]
    assert loader["ckpt_name"] == "b.safetensors"


def test_a_users_workflow_with_placeholders_and_a_boxes_node(tmp_path):
    user = {
        "10": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
        "11": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}, masterpiece", "clip": ["10", 1]}},
        "12": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{negative_prompt}}", "clip": ["10", 1]}},
        "13": {"class_type": "GLIGENLoader", "inputs": {"gligen_name": "gligen_sd14_textbox_pruned.safetensors"}},
        "14": {"class_type": "GLIGENTextBoxApply", "inputs": {"conditioning_to": ["11", 0], "clip": ["10", 1],
                                                               "gligen_textbox_model": ["13", 0], "text": "{{boxes}}",
                                                               "width": 64, "height": 64, "x": 0, "y": 0}},
        "15": {"class_type": "EmptyLatentImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": 1}},
        "16": {"class_type": "KSampler", "inputs": {"model": ["10", 0], "seed": "{{seed}}", "steps": "{{steps}}", "cfg": "{{cfg}}",
                                                     "sampler_name": "dpmpp_2m", "scheduler": "karras", "positive": ["14", 0],
                                                     "negative": ["12", 0], "latent_image": ["15", 0], "denoise": 1.0}},
        "17": {"class_type": "VAEDecode", "inputs": {"samples": ["16", 0], "vae": ["10", 2]}},
        "18": {"class_type": "SaveImage", "inputs": {"images": ["17", 0], "filename_prefix": "mine"}},
    }
    path = tmp_path / "workflow_api.json"
    path.write_text(json.dumps(user))
    with ComfyUIStub() as stub:
        out = create_generator(f"comfyui:{stub.url}?workflow={path}").generate(request(negative_prompt="blurry"))
    sent = stub.prompts[0]["prompt"]
    assert sent["11"]["inputs"]["text"] == "{{prompt}}, masterpiece"  # only whole values are placeholders
    assert sent["12"]["inputs"]["text"] == "blurry" and sent["16"]["inputs"]["seed"] == 7 and sent["16"]["inputs"]["cfg"] == 7.5
    assert sent["16"]["inputs"]["positive"] == ["14.1", 0] and sent["14.1"]["inputs"]["conditioning_to"] == ["14.0", 0]
    assert out.image.getpixel((50, 50)) == (255, 255, 255)
    empty = fill_workflow(user, {"prompt": "p", "negative_prompt": "", "seed": 1, "width": 64, "height": 64, "steps": 2,
                                 "cfg": 7.0}, [], [])
    assert "14" not in empty and empty["16"]["inputs"]["positive"] == ["11", 0]
    with pytest.raises(ConfigError, match="unknown placeholder"):
        fill_workflow({"1": {"class_type": "X", "inputs": {"a": "{{lora}}"}}}, {}, [], [])


def test_execution_errors_and_unreachable_servers_are_one_line():
    with ComfyUIStub(fail_in="CheckpointLoaderSimple") as stub:
        with pytest.raises(BackendError, match=r"^ComfyUI failed in node 1 \(CheckpointLoaderSimple\): "
                                               r"safetensors_rust.SafetensorError: Error while deserializing header: HeaderTooLarge$"):
            ComfyUIGenerator(stub.url).generate(request())
        url = stub.url
    gen = ComfyUIGenerator(url, retries=0)
    with pytest.raises(BackendError, match="is the server running and the URL right"):
        gen.generate(request(layout=None))


def test_busy_servers_are_retried_like_the_mllm():
    with ComfyUIStub() as stub:
        stub.post_failures = 2
        gen = ComfyUIGenerator(stub.url, checkpoint="tiny-sd15.safetensors")
        gen.http.policy.sleep = lambda seconds: None
        gen.generate(request(layout=None))
    assert gen.http.retried == ["server", "server"] and len(stub.prompts) == 1


def test_spec_urls_and_box_conversion():
    assert split_spec_url("http://h:8188/?steps=4&cfg=5") == ("http://h:8188", {"steps": 4, "cfg": 5.0})
    with pytest.raises(ConfigError, match="unknown option 'lora'"):
        split_spec_url("http://h:8188?lora=x")
    with pytest.raises(ConfigError, match="not a server URL"):
        split_spec_url("ftp://h")
    assert gligen_box([0.1, 0.2, 0.55, 0.9], 512, 512) == {"x": 48, "y": 104, "width": 232, "height": 360}
    assert gligen_box([0.99, 0.99, 1.0, 1.0], 64, 64) == {"x": 56, "y": 56, "width": 8, "height": 8}


def test_generate_on_the_command_line_through_comfyui(tmp_path, capsys):
    from mllm_guidance.cli import main
    from tests.cli.test_cli import PROMPT, RECORDING

    with ComfyUIStub() as stub:
        code = main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--generator", f"comfyui:{stub.url}",
                     "--size", "64", "--steps", "2", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "round-1.png").exists() and len(stub.prompts) >= 1
