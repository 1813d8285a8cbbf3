"""A real ComfyUI server for tests, from a checkout the developer names (``COMFYUI_DIR``), with tiny
checkpoints built here. Nothing of ComfyUI is in this repository: its source is GPL-3.0 and is not on
PyPI, and CI machines cannot clone it, so the tests that use this skip unless ``COMFYUI_DIR`` is set.

Setting it up (outside the repository; checked with Comfy-Org/ComfyUI at a125cd84, 2025-10-11)::

    git clone https://github.com/Comfy-Org/ComfyUI /opt/ComfyUI
    pip install --target /opt/comfy-site --no-deps torchsde trampoline einops psutil av sqlalchemy alembic mako \\
        sentencepiece torchvision comfyui-frontend-package comfyui-workflow-templates comfyui-embedded-docs
    COMFYUI_DIR=/opt/ComfyUI COMFYUI_SITE=/opt/comfy-site python -m pytest tests/backends/test_comfyui_real.py

(torchvision must match the installed torch; PyPI's CUDA wheel beside a CPU torch needs its operator
registrations skipped, which the harness cannot do for you.)

The checkpoints: ComfyUI recognizes an SD 1.5 checkpoint by its UNet's shapes (model_channels 320,
context_dim 768), and builds CLIP-L and the SD VAE at their full, fixed sizes; so the UNet here is
tiny (one level, one transformer block per stage, ComfyUI's own ``UNetModel``), while the CLIP text
encoder (transformers ``CLIPTextModel`` with ComfyUI's ``sd1_clip_config.json``) and the VAE
(diffusers ``AutoencoderKL`` with SD's layout, which ComfyUI converts on load) are full-size random
weights, saved in fp16 (about 400 MB, written once to a cache folder). The GLIGEN file holds one of
ComfyUI's ``GatedSelfAttentionDense`` per transformer block and its ``PositionNet``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

BUILD = r'''
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from safetensors.torch import save_file
out, comfy_dir = sys.argv[2], sys.argv[1]
sys.argv = [sys.argv[0], "--cpu"]  # comfy.cli_args reads the command line on import, when enabled
import comfy.options
comfy.options.enable_args_parsing()
torch.manual_seed(0)
import comfy.ops
from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
unet = UNetModel(image_size=32, in_channels=4, model_channels=320, out_channels=4, num_res_blocks=1,
                 channel_mult=[1], num_heads=8, use_spatial_transformer=True,
                 transformer_depth=[1], transformer_depth_output=[1, 1], context_dim=768, use_linear_in_transformer=False,
                 transformer_depth_middle=1, operations=comfy.ops.manual_cast)
sd = {}
with torch.no_grad():
    for name, p in unet.state_dict().items():
        sd["model.diffusion_model." + name] = (torch.randn(p.shape) * 0.02).half() if p.dtype.is_floating_point else p
from transformers import CLIPTextConfig, CLIPTextModel
config = json.load(open(comfy_dir + "/comfy/sd1_clip_config.json"))
config = {k: v for k, v in config.items() if k in CLIPTextConfig().to_dict()}
clip = CLIPTextModel(CLIPTextConfig(**config))
for name, p in clip.state_dict().items():
    sd["cond_stage_model.transformer." + name] = p.half()
from diffusers import AutoencoderKL
vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=["DownEncoderBlock2D"] * 4,
                    up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4)
for name, p in vae.state_dict().items():
    sd["first_stage_model." + name] = p.half()
save_file(sd, out + "/checkpoints/tiny-sd15.safetensors")
from comfy.gligen import GatedSelfAttentionDense, PositionNet
gl = {}
blocks = [k.split(".transformer_blocks.")[0] for k in unet.state_dict() if k.endswith("transformer_blocks.0.attn1.to_q.weight")]
for block in blocks:
    module = GatedSelfAttentionDense(320, 768, 8, 40)
    for name, p in module.state_dict().items():
        gl[block + ".transformer_blocks.0.fuser." + name] = (torch.randn(p.shape) * 0.02) if p.dim() else torch.tensor(1.0)
position = PositionNet(768, 768)
for name, p in position.state_dict().items():
    gl["position_net." + name] = torch.randn(p.shape) * 0.02
save_file(gl, out + "/gligen/tiny-gligen.safetensors")
print("built", len(sd), "checkpoint tensors,", len(blocks), "gligen blocks")
'''


def comfyui_dir() -> Path | None:
    value = os.environ.get("COMFYUI_DIR")
    return Path(value) if value and (Path(value) / "main.py").exists() else None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.environ.get("COMFYUI_SITE", ""), env.get("PYTHONPATH", "")) if p)
    return env


def build_models(comfy: Path, base: Path) -> None:
    """Tiny checkpoints in ``base/models`` (built once; about 400 MB)."""
    models = base / "models"
    if (models / "checkpoints" / "tiny-sd15.safetensors").exists():
        return
    for sub in ("checkpoints", "gligen"):
        (models / sub).mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", BUILD, str(comfy), str(models)], check=True, env=_env(), cwd=comfy)


class RealComfyUI:
    """``python main.py --cpu`` on a free port with ``base`` as its base directory."""

    def __init__(self, comfy: Path, base: Path, extra_args: list[str] | None = None) -> None:
        self.comfy, self.base, self.extra = comfy, base, list(extra_args or [])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = base / "comfyui.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RealComfyUI:
        import httpx

        for sub in ("input", "output", "temp", "user", "custom_nodes"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--disable-auto-launch", "--base-directory", str(self.base), "--database-url", "sqlite:///:memory:",
             *self.extra],
            cwd=self.comfy, env=_env(), stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited ({self.process.returncode}); see {self.log}")
            try:
                if httpx.get(self.url + "/object_info/KSampler", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.__exit__()
        raise RuntimeError(f"ComfyUI did not start within 240 s; see {self.log}")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


#: What a node definition says about its interface; its prose (tooltips, descriptions, display names:
#: ComfyUI's GPL-3.0 text) is not kept in this repository.
INTERFACE_KEYS = ("input", "input_order", "output", "output_is_list", "output_name", "name", "output_node")


def interface_only(spec: dict) -> dict:
    """A node definition without its prose: every ``tooltip`` in the input options dropped."""

    def strip(value: object) -> object:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "tooltip"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return {k: strip(v) for k, v in spec.items() if k in INTERFACE_KEYS}


def capture_object_info(url: str, nodes: tuple[str, ...], target: Path, source: str) -> None:
    """Write the definitions of ``nodes`` as a real server reports them (its file lists replaced by a
    ``FILES:folder`` marker the stand-in fills with its own), for ``tests/comfyui_stub.py``."""
    import json

    import httpx

    info = httpx.get(url + "/object_info", timeout=30).json()
    out: dict[str, object] = {"_source": source}
    folders = {"ckpt_name": "checkpoints", "gligen_name": "gligen"}
    for node in nodes:
        spec = interface_only(info[node])
        for name, kind in spec["input"]["required"].items():
            if name in folders:
                kind[0] = [f"FILES:{folders[name]}"]
        out[node] = spec
    target.write_text(json.dumps(out, indent=1) + "\n")
