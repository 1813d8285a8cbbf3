"""Stand-in clones of the research repositories the InstanceDiffusion and Rich-context adapters run.

The stand-ins are our own minimal code with the upstream interfaces and the quirks that broke or
could break the adapters, read at these commits:

- frank-xwang/InstanceDiffusion @ 722900ef03e3579fb693e65a1550333a4a162581, mirrored in ``inference.py``:
  ``inference.py`` (``args`` and ``return_att_masks`` are assigned only under ``__main__`` but read by
  ``get_model_inputs`` and ``run``; ``from tkinter.messagebox import NO`` at the top, also in
  ``dataset/decode_item.py``; module-level ``device = "cuda"`` used as ``torch.autocast`` device
  type; output written under ``args.output`` as ``{n}_boxes.png`` and ``{n}.png`` with ``n`` the
  folder's file count; ``cascade_strength > 0`` loads the SDXL refiner from the hub),
  ``utils/checkpoint.py`` (``load_model_ckpt`` reads ``args.test_config`` as given: relative paths
  resolve against the working directory) and ``ldm/modules/diffusionmodules/openaimodel.py``
  (``restore_first_conv_from_SD`` loads ``pretrained/SD_v1_5_input_conv_weight_bias.pth`` by a
  relative path; the samplers in ``ldm/models/diffusion/plms*.py`` call it at every step whose
  grounding weight alpha is 0).
- cplusx/rich_context_L2I @ cc4ca46903c03ae608a9e7d390c004343ceb5c89, mirrored in
  ``inference_on_dataset.py`` (``NEGATIVE_PROMPTS``; ``get_pipe`` loads the UNet in fp16 from the
  config's relative ``regional_attn_sdxl_512_init_weights``, the VAE
  ``madebyollin/sdxl-vae-fp16-fix`` without a dtype (fp32), the SDXL base in fp16 (variant fp16),
  moves the pipeline to "cuda", then loads the SDXL refiner from the hub; ``load_ckpt`` loads the
  ``unet.``-prefixed keys of a ``.pt`` into the UNet), ``pipelines/sdxl_pipeline.py``
  (``StableDiffusionXLRegionalAttnPipeline(StableDiffusionXLPipeline).__call__`` with ``boxes``,
  ``labels``, ``scheduled_sampling_beta``; latents in the text encoders' dtype, decoded by the VAE
  without a cast unless the VAE is fp16: an fp32 VAE fed fp16 latents raises "Input type
  (c10::Half) and bias type (float) should be the same" unless under autocast) and
  ``regional_attention/diffusers_unet.py`` (a diffusers ``UNet2DConditionModel``; here diffusers'
  own class stands in for their copy) and ``inference.ipynb`` (current loading from the
  diffusers-style ``cplusx/rich_context_l2i_sdxl``: ``unet`` subfolder first, then the pipeline with
  that UNet, no dtype).

What the stand-ins leave out, because this machine has no CUDA: InstanceDiffusion's ``.cuda()``
calls (``create_clip_pretrain_model``, ``get_clip_feature``, ``prepare_batch(device="cuda")``) and
the ``pipe.to("cuda")`` of Rich-context's ``get_pipe`` happen only where CUDA is available. Hub ids
resolve to folders of the same name inside the stand-in clone (diffusers reads an existing local
folder first; the workers run in the clone); the SDXL refiner has none, so loading it fails as an
offline download would. Every stand-in call appends a JSON line to ``$RESEARCH_STANDIN_LOG``.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

INSTANCEDIFFUSION_COMMIT = "722900ef03e3579fb693e65a1550333a4a162581"
RICH_CONTEXT_COMMIT = "cc4ca46903c03ae608a9e7d390c004343ceb5c89"
LOG_ENV = "RESEARCH_STANDIN_LOG"

LOG_HELPER = '''
def log(**event):
    import json, os, time
    event.update(pid=os.getpid(), cwd=os.getcwd(), time=time.time())
    with open(os.environ["RESEARCH_STANDIN_LOG"], "a") as f:
        f.write(json.dumps(event) + "\\n")
'''

INSTANCE_INFERENCE = '''
"""Stand-in for InstanceDiffusion inference.py @ 722900e (see tests/backends/research_standins.py)."""
import argparse
import os
import sys
import time
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image, ImageDraw
from omegaconf import OmegaConf
from tkinter.messagebox import NO

device = "cuda"
FIRST_CONV = "pretrained/SD_v1_5_input_conv_weight_bias.pth"
''' + LOG_HELPER + '''

class UNetModel(torch.nn.Module):
    def __init__(self, image_size, in_channels):
        super().__init__()
        self.image_size, self.in_channels = image_size, in_channels
        self.first = torch.nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.restored = 0

    def restore_first_conv_from_SD(self):
        self.first.load_state_dict(torch.load(FIRST_CONV))  # relative to the working directory, as theirs
        self.restored += 1

    def forward(self, x, context):
        return self.first(x) + context.mean()


class Autoencoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.post = torch.nn.Conv2d(4, 3, 1)

    def decode(self, z):
        return torch.tanh(torch.nn.functional.interpolate(self.post(z), scale_factor=8))


class TextEncoder:
    def encode(self, texts):
        return torch.stack([torch.full((77, 8), float(len(t) % 7)) for t in texts])


class GroundingNetInput:
    def prepare(self, batch, return_att_masks=False):
        return {"boxes": torch.tensor(batch["locations"]), "att_masks": return_att_masks}


def instantiate_from_config(config):
    assert config["target"].endswith("GroundingNetInput")
    return GroundingNetInput()


def load_model_ckpt(ckpt_path, args, device):
    saved = torch.load(ckpt_path, map_location="cpu")
    config = OmegaConf.to_container(OmegaConf.load(args.test_config))  # as given: relative paths need the clone as cwd
    model = UNetModel(**config["model"]["params"])
    model.load_state_dict(saved["model"])
    log(event="load", ckpt=ckpt_path, test_config=args.test_config, device=str(device))
    return model.to(device).eval(), Autoencoder().to(device).eval(), TextEncoder(), "diffusion", config


def create_clip_pretrain_model():
    return "clip", "processor"


def rescale_box(bbox, width, height):
    return [bbox[0] / width, bbox[1] / height, (bbox[0] + bbox[2]) / width, (bbox[1] + bbox[3]) / height]


def get_point_from_box(bbox):
    return [(bbox[0] + bbox[2]) / 2.0, (bbox[1] + bbox[3]) / 2.0]


def sample_random_points_from_mask(mask, k):
    assert not mask.any()
    return [0] * (k * 2)


def sample_sparse_points_from_mask(mask, k):
    assert not mask.any()
    return None


def convert_points(points, info):
    return [min(p / (info["width"] if i % 2 == 0 else info["height"]), 1.0) for i, p in enumerate(points)]


def resize(array, shape):
    return np.zeros(shape, dtype=array.dtype)


def alphas(length, alpha_type):
    stage0 = int(alpha_type[0] * length)
    return [1] * stage0 + [0] * (length - stage0)


def get_model_inputs(meta, model, text_encoder, diffusion, clip_model, clip_processor, config, grounding_tokenizer_input,
                     starting_noise=None, instance_input=False):
    if not instance_input:
        config.update(vars(args))
        config = SimpleNamespace(**config)
    context = text_encoder.encode([meta["prompt"]] * config.num_images)
    uc = None
    if not instance_input and args.negative_prompt is not None:
        uc = text_encoder.encode(config.num_images * [args.negative_prompt])
    grounding_input = grounding_tokenizer_input.prepare(meta, return_att_masks=return_att_masks)
    return dict(x=starting_noise, context=context, grounding_input=grounding_input), uc, config


def draw_boxes(boxes):
    image = Image.new("RGB", (512, 512), (255, 255, 255))
    for box in boxes:
        ImageDraw.Draw(image).rectangle([int(v * 512) for v in box], outline=(0, 0, 0))
    return image


def run(meta, model, autoencoder, text_encoder, diffusion, clip_model, clip_processor, config, grounding_tokenizer_input,
        starting_noise=None, guidance_scale=None):
    started = time.time()
    inputs, uc, config = get_model_inputs(meta, model, text_encoder, diffusion, clip_model, clip_processor, config,
                                          grounding_tokenizer_input, starting_noise)
    if guidance_scale is not None:
        config.guidance_scale = guidance_scale
    instances = len(meta["phrases"]) if args.mis > 0 else 0
    x = inputs["x"]
    with torch.autocast(device_type=device, dtype=torch.float16):
        autocast = torch.is_autocast_enabled(x.device.type)
        for alpha in alphas(4, meta["alpha_type"]):
            if alpha == 0:
                model.restore_first_conv_from_SD()
            x = x - 0.1 * model(x, inputs["context"]) * config.guidance_scale
    samples = autoencoder.decode(x)
    time.sleep(float(os.environ.get("STANDIN_RUN_SECONDS", "0")))
    folder = os.path.join(args.output, meta["save_folder_name"])
    os.makedirs(folder, exist_ok=True)
    start = len(os.listdir(folder))
    draw_boxes(meta["locations"]).save(os.path.join(folder, f"{start}_boxes.png"))
    print(f"stand-in: boxes drawn in {folder}")  # theirs prints a line to stdout here too
    if config.cascade_strength > 0:
        raise RuntimeError("stand-in: run() would download stabilityai/stable-diffusion-xl-refiner-1.0 here")
    pixels = ((samples[0].clamp(-1, 1) * 0.5 + 0.5) * 255).permute(1, 2, 0).detach().cpu().numpy().astype(np.uint8)
    Image.fromarray(pixels).save(os.path.join(folder, f"{start}.png"))
    log(event="run", prompt=meta["prompt"], phrases=meta["phrases"], locations=meta["locations"],
        points=meta["points"], alpha_type=meta["alpha_type"], guidance=config.guidance_scale,
        negative=args.negative_prompt, mis=args.mis, instances=instances, autocast=autocast,
        att_masks=inputs["grounding_input"]["att_masks"], noise=starting_noise.flatten()[:4].tolist(),
        noise_shape=list(starting_noise.shape), restored=model.restored, output=args.output,
        tkinter_file=getattr(sys.modules["tkinter"], "__file__", None), started=started)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", default="OUTPUT")
    parser.add_argument("--ckpt", default="pretrained/instancediffusion_sd15.pth")
    parser.add_argument("--test_config", default="configs/test_mask.yaml")
    args = parser.parse_args()
    return_att_masks = False
'''

INSTANCE_CONFIG = '''
model:
  target: ldm.modules.diffusionmodules.openaimodel.UNetModel
  params:
    image_size: 64
    in_channels: 4
grounding_tokenizer_input:
  target: grounding_input.text_grounding_tokinzer_input.GroundingNetInput
'''


def make_instancediffusion_clone(root: Path) -> Path:
    """A clone with the stand-in ``inference.py``, ``configs/test_box.yaml`` and ``pretrained/`` files."""
    import torch

    (root / "pretrained").mkdir(parents=True)
    (root / "configs").mkdir()
    (root / "inference.py").write_text(textwrap.dedent(INSTANCE_INFERENCE))
    (root / "configs" / "test_box.yaml").write_text(INSTANCE_CONFIG)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    torch.save(conv.state_dict(), root / "pretrained" / "SD_v1_5_input_conv_weight_bias.pth")
    from omegaconf import OmegaConf

    # as the released checkpoint: the weights and the training config, an OmegaConf object (which
    # torch >= 2.6 refuses to unpickle unless told weights_only=False)
    torch.save({"model": {f"first.{k}": v for k, v in conv.state_dict().items()},
                "config": OmegaConf.create({"model": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel"}})},
               root / "pretrained" / "instancediffusion_sd15.pth")
    return root


def block_tkinter(folder: Path) -> str:
    """A folder that, first on PYTHONPATH, makes ``import tkinter`` fail as on a server without python3-tk."""
    (folder / "tkinter").mkdir(parents=True)
    (folder / "tkinter" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'tkinter'\", name='tkinter')\n")
    return str(folder)


RICH_UNET = '''
"""Stand-in for regional_attention/diffusers_unet.py @ cc4ca46: theirs is a copy of diffusers' UNet."""
from diffusers import UNet2DConditionModel as _Diffusers


class UNet2DConditionModel(_Diffusers):
    pass
'''

RICH_PIPELINE = '''
"""Stand-in for pipelines/sdxl_pipeline.py @ cc4ca46 (see tests/backends/research_standins.py)."""
import torch
from diffusers import StableDiffusionXLPipeline
from diffusers.pipelines.stable_diffusion_xl.pipeline_output import StableDiffusionXLPipelineOutput
''' + LOG_HELPER + '''

class StableDiffusionXLRegionalAttnPipeline(StableDiffusionXLPipeline):
    @torch.no_grad()
    def __call__(self, prompt=None, height=None, width=None, num_inference_steps=50, guidance_scale=5.0,
                 scheduled_sampling_beta=1.0, labels=None, boxes=None, negative_prompt=None, generator=None, **kwargs):
        kind = self.unet.device.type
        log(event="call", prompt=prompt, negative=negative_prompt, height=height, width=width,
            steps=num_inference_steps, guidance=guidance_scale, beta=scheduled_sampling_beta, labels=labels,
            boxes=boxes.tolist(), boxes_type=type(boxes).__name__, seed=generator.initial_seed(),
            autocast=torch.is_autocast_enabled(kind), autocast_dtype=str(torch.get_autocast_dtype(kind)),
            unet=str(self.unet.dtype), vae=str(self.vae.dtype), text_encoder=str(self.text_encoder.dtype))
        latents = super().__call__(prompt=prompt, height=height, width=width, num_inference_steps=num_inference_steps,
                                   guidance_scale=guidance_scale, negative_prompt=negative_prompt, generator=generator,
                                   output_type="latent", return_dict=False)[0]
        # their decode: the VAE is upcast only when it is itself fp16; an fp32 VAE gets the latents as they are
        image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        return StableDiffusionXLPipelineOutput(images=self.image_processor.postprocess(image, output_type="pil"))
'''

RICH_INFERENCE = '''
"""Stand-in for inference_on_dataset.py @ cc4ca46 (see tests/backends/research_standins.py)."""
import torch
from diffusers import AutoencoderKL, StableDiffusionXLImg2ImgPipeline
from regional_attention.diffusers_unet import UNet2DConditionModel
from pipelines.sdxl_pipeline import StableDiffusionXLRegionalAttnPipeline, log

NEGATIVE_PROMPTS = "stand-in negative prompts"


def get_pipe(version, config):
    unet = UNet2DConditionModel.from_pretrained(**config.unet.params, torch_dtype=torch.float16)
    # their hub ids, kept as written upstream: in the stand-in clone (the working directory) they are
    # local folders of tiny models built from configs, and the tests run with HF_HUB_OFFLINE=1
    vae = AutoencoderKL.from_pretrained("madebyollin/sdxl-vae-fp16-fix")
    pipe = StableDiffusionXLRegionalAttnPipeline.from_pretrained(
        "stabilityai/stable-diffusion-xl-base-1.0", variant="fp16", torch_dtype=torch.float16, unet=unet, vae=vae)
    if torch.cuda.is_available():
        pipe = pipe.to("cuda")
    refine_pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        "stabilityai/stable-diffusion-xl-refiner-1.0", torch_dtype=torch.float16, variant="fp16", use_safetensors=True)
    refine_pipe = refine_pipe.to("cuda")
    log(event="get_pipe", version=version, unet_from=str(config.unet.params.pretrained_model_name_or_path),
        refiner=type(refine_pipe).__name__)
    return pipe, refine_pipe, unet


def load_ckpt(ckpt_path, pipe):
    ckpt = torch.load(ckpt_path, map_location="cpu")
    weights = {k[len("unet."):]: v for k, v in ckpt.items() if k.startswith("unet.")}
    pipe.unet.load_state_dict(weights)
    log(event="load_ckpt", path=ckpt_path, keys=len(weights))
'''

RICH_CONFIG = '''
unet:
  target: regional_attention.diffusers_unet.UNet2DConditionModel
  params:
    pretrained_model_name_or_path: "regional_attn_sdxl_512_init_weights"
'''


def tiny_sdxl(folder: Path) -> Any:
    """A tiny random-weight SDXL pipeline (text encoders 32 + 32 = the UNet's 64)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    from tests.backends.tiny_diffusion import _text_encoder, clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=64, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=32 + 6 * 8,
        cross_attention_dim=64,
    )
    # five blocks: latents of 512 / 16 = 32 pixels, so that fp16 on a CPU stays quick
    vae = AutoencoderKL(block_out_channels=[8] * 5, norm_num_groups=4, layers_per_block=1, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 5, up_block_types=["UpDecoderBlock2D"] * 5)
    tokenizer = clip_tokenizer(folder / "_tok")
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=_text_encoder(32), text_encoder_2=_text_encoder(32, with_projection=True),
        tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet,
        scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1),
    )


def make_rich_context_clone(root: Path, work: Path) -> tuple[Path, Path]:
    """(the stand-in clone with the old route's files, a local copy of the current diffusers-style release)."""
    import torch

    for package in ("regional_attention", "pipelines", "configs"):
        (root / package).mkdir(parents=True)
    (root / "regional_attention" / "__init__.py").write_text("")
    (root / "pipelines" / "__init__.py").write_text("")
    (root / "regional_attention" / "diffusers_unet.py").write_text(textwrap.dedent(RICH_UNET))
    (root / "pipelines" / "sdxl_pipeline.py").write_text(textwrap.dedent(RICH_PIPELINE))
    (root / "inference_on_dataset.py").write_text(textwrap.dedent(RICH_INFERENCE))
    (root / "configs" / "layout_sdxl.yaml").write_text(RICH_CONFIG)
    pipe = tiny_sdxl(work)
    # the current release: one diffusers-style folder, weights stored in fp16
    release = work / "rich_context_l2i_sdxl"
    pipe.to(torch.float16).save_pretrained(release)
    pipe.to(torch.float32)
    # the old route: initial UNet, SDXL base (fp16 variant) and VAE under their hub ids, and the .pt checkpoint
    pipe.unet.save_pretrained(root / "regional_attn_sdxl_512_init_weights")
    pipe.vae.save_pretrained(root / "madebyollin" / "sdxl-vae-fp16-fix")
    pipe.to(torch.float16).save_pretrained(root / "stabilityai" / "stable-diffusion-xl-base-1.0", variant="fp16")
    torch.save({f"unet.{k}": v.float() for k, v in pipe.unet.state_dict().items()}, root / "rich_context_sdxl_e580.pt")
    return root, release


class ProbeDriver:
    """A driver for ``ResearchWorker`` itself: where it runs, what it prints, how it fails."""

    def __init__(self, root: str, fail_at_load: bool = False) -> None:
        if fail_at_load:
            from mllm_guidance.errors import BackendError

            raise BackendError("Probe: cannot load (a one-line reason)")
        from mllm_guidance.backends.research_code import use_checkout

        use_checkout(root)
        self.root = root

    def where(self) -> dict[str, Any]:
        import os
        import sys

        print("their code printing to stdout")
        os.write(1, b"and writing straight to file descriptor 1\n")
        return {"cwd": os.getcwd(), "pid": os.getpid(), "root_on_path": self.root in sys.path}

    def echo(self, value: Any) -> Any:
        return value

    def fail(self) -> None:
        raise ValueError("bad input\nsecond line of the message")

    def crash(self) -> None:
        import os

        os._exit(3)


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
