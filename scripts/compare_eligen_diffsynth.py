#!/usr/bin/env python
"""Compare the project's EliGen Qwen-Image pipeline with DiffSynth-Studio's own, on the same tiny
random weights (run by hand; DiffSynth is never a dependency of the project).

The authors' code is the ``diffsynth`` 2.1.12 release on PyPI (modelscope/DiffSynth-Studio):
``diffsynth/pipelines/qwen_image.py`` (``QwenImagePipeline``, ``QwenImageUnit_EntityControl``,
``model_fn_qwen_image``) and ``diffsynth/models/qwen_image_dit.py`` (``QwenImageDiT``,
``process_entity_masks``). Install it outside the project's environment and put it on the path for
this script only::

    pip install --no-deps --target /tmp/diffsynth diffsynth==2.1.12
    pip install --no-deps --target /tmp/diffsynth-deps einops imageio modelscope modelscope_hub accelerate
    PYTHONPATH=.:/tmp/diffsynth:/tmp/diffsynth-deps python scripts/compare_eligen_diffsynth.py [--record]

What is the same on both sides: the tiny Qwen-Image of ``tests/backends/golden_models.py`` (its
transformer's state dict loads into DiffSynth's ``QwenImageDiT`` with no missing or unexpected key,
its text encoder's, through DiffSynth's own converter, into its ``QwenImageTextEncoder``, its tokenizer is read by both), the
seed (DiffSynth draws the initial noise on the CPU from ``torch.Generator().manual_seed(seed)``, as
diffusers does), the prompts, the boxes (drawn for DiffSynth as the white-on-black mask images it
takes), 4 steps of true classifier-free guidance 4.0 against the empty negative prompt (DiffSynth's
defaults; the project's pipeline with ``cfg_normalize=False``, their plain guidance).

What this script changes in DiffSynth, and why:

* ``QwenImageDiT.__init__`` hard-codes the 20B model's widths (3072 wide, 24 heads, 3584-wide text,
  rotary axes 16/56/56); the tiny DiT is assembled from the same classes (``QwenEmbedRope``,
  ``TimestepEmbeddings``, ``RMSNorm``, ``QwenImageTransformerBlock``, ``AdaLayerNorm``) at the tiny
  widths, and ``QwenImageTextEncoder`` likewise wraps the tiny ``Qwen2_5_VLModel``. Every method that
  runs is theirs.
* Their feed-forward activation, ``ApproximateGELU``, is ``x * sigmoid(1.702 x)``; diffusers' (and
  Qwen's reference) is the tanh GELU. That is a difference of the base model, not of EliGen, so the
  comparison is made twice: with their activation as published (the base-model difference), and with
  it set to the tanh GELU (EliGen alone). Goldens are recorded from the second.
* The VAE is left out: final latents are compared, before decoding.
* torchvision, imported by DiffSynth's training-data module but by nothing that runs here, has no CPU
  build for this torch; an import stub stands in for it when it is missing.

``--record`` writes the DiffSynth latents as goldens (``tests/backends/golden/eligen-qwen*.safetensors``)
that ``tests/backends/test_goldens.py`` checks the project's pipeline against in CI.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AUTHORS = ("modelscope/DiffSynth-Studio", "diffsynth==2.1.12 (PyPI)")

#: Shared with the golden test, which reads the case back from each golden's metadata.
CASES: dict[str, dict] = {
    "eligen-qwen": dict(prompt="a cat and a dog on a sofa", entities=[["a grey cat", [0.0, 0.25, 0.625, 1.0]],
                                                                      ["a brown dog", [0.5, 0.0, 1.0, 0.75]]],
                        negative="", cfg=4.0, size=128, steps=4, seed=0, on_negative=False),
    "eligen-qwen-negative": dict(prompt="a red apple", entities=[["an apple", [0.25, 0.25, 0.75, 0.75]]],
                                 negative="", cfg=4.0, size=128, steps=4, seed=1, on_negative=True),
}


def _stub_torchvision() -> None:
    """Stand in for a missing torchvision (see the module docstring); transformers is asked first, so
    it keeps believing torchvision is absent."""
    import importlib.abc
    import importlib.machinery
    import importlib.util
    import types

    if importlib.util.find_spec("torchvision") is not None:
        return
    from transformers.utils import import_utils

    import_utils.is_torchvision_available()  # cached as False before the stub exists

    class Absent:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("torchvision is stubbed out for this comparison")

    class Module(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return Absent

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if name == "torchvision" or name.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            return Module(spec.name)

        def exec_module(self, module):
            module.__path__ = []

    sys.meta_path.insert(0, Finder())


def diffsynth_pipeline(model: Path):
    """DiffSynth's ``QwenImagePipeline`` holding the tiny model's weights (see the docstring)."""
    import torch
    from diffsynth.models import qwen_image_dit as dit_module
    from diffsynth.models.general_modules import AdaLayerNorm, RMSNorm, TimestepEmbeddings
    from diffsynth.models.qwen_image_text_encoder import QwenImageTextEncoder
    from diffsynth.pipelines.qwen_image import QwenImagePipeline
    from diffsynth.utils.state_dict_converters.qwen_image_text_encoder import QwenImageTextEncoderStateDictConverter
    from safetensors.torch import load_file
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLModel, Qwen2Tokenizer

    config = json.loads((model / "transformer" / "config.json").read_text())
    width = config["num_attention_heads"] * config["attention_head_dim"]
    dit = dit_module.QwenImageDiT.__new__(dit_module.QwenImageDiT)
    torch.nn.Module.__init__(dit)
    dit.pos_embed = dit_module.QwenEmbedRope(theta=10000, axes_dim=list(config["axes_dims_rope"]), scale_rope=True)
    dit.time_text_embed = TimestepEmbeddings(256, width, diffusers_compatible_format=True, scale=1000,
                                             align_dtype_to_timestep=False)
    dit.txt_norm = RMSNorm(config["joint_attention_dim"], eps=1e-6)
    dit.img_in = torch.nn.Linear(config["in_channels"], width)
    dit.txt_in = torch.nn.Linear(config["joint_attention_dim"], width)
    dit.transformer_blocks = torch.nn.ModuleList(
        dit_module.QwenImageTransformerBlock(dim=width, num_attention_heads=config["num_attention_heads"],
                                             attention_head_dim=config["attention_head_dim"])
        for _ in range(config["num_layers"]))
    dit.norm_out = AdaLayerNorm(width, single=True)
    dit.proj_out = torch.nn.Linear(width, config["patch_size"] ** 2 * config["out_channels"])
    dit.load_state_dict(load_file(str(model / "transformer" / "diffusion_pytorch_model.safetensors")), strict=True)

    encoder = QwenImageTextEncoder.__new__(QwenImageTextEncoder)
    torch.nn.Module.__init__(encoder)
    vl_config = Qwen2_5_VLConfig.from_pretrained(model / "text_encoder")
    encoder.model = Qwen2_5_VLModel(vl_config)
    encoder.lm_head = torch.nn.Linear(vl_config.text_config.hidden_size, vl_config.text_config.vocab_size, bias=False)
    encoder.config = vl_config
    saved = load_file(str(model / "text_encoder" / "model.safetensors"))  # the hub checkpoint's key layout
    encoder.load_state_dict(QwenImageTextEncoderStateDictConverter(saved), strict=True)  # as their loader converts it

    pipe = QwenImagePipeline(device="cpu", torch_dtype=torch.float32)
    pipe.dit, pipe.text_encoder = dit.eval(), encoder.eval()
    pipe.tokenizer = Qwen2Tokenizer.from_pretrained(model / "tokenizer")
    pipe.vae = LatentsOnly()
    pipe.vram_management_enabled = False
    return pipe


class LatentsOnly:
    """Stands in for DiffSynth's VAE: keeps the final latents, decodes to a black image."""

    latents = None

    def decode(self, latents, **kwargs):
        import torch

        self.latents = latents.clone()
        return torch.zeros(latents.shape[0], 3, latents.shape[-2] * 8, latents.shape[-1] * 8)


def box_mask(box, size: int):
    """The white-on-black mask image DiffSynth takes, for a normalized box (pixels round(x1 * size) <= x < round(x2 * size))."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size))
    x1, y1, x2, y2 = (round(v * size) for v in box)
    ImageDraw.Draw(image).rectangle([x1, y1, x2 - 1, y2 - 1], fill=(255, 255, 255))
    return image


def run_diffsynth(pipe, case: dict):
    size = case["size"]
    pipe(case["prompt"], negative_prompt=case["negative"], cfg_scale=case["cfg"], height=size, width=size, seed=case["seed"],
         rand_device="cpu", num_inference_steps=case["steps"], eligen_entity_prompts=[p for p, _ in case["entities"]],
         eligen_entity_masks=[box_mask(b, size) for _, b in case["entities"]], eligen_enable_on_negative=case["on_negative"],
         progress_bar_cmd=lambda steps: steps)
    return pipe.vae.latents  # (1, 16, h, w)


def run_project(pipe, case: dict):
    """The project's pipeline on a case: its final latents as (1, 16, h, w)."""
    import torch

    size = case["size"]
    packed = pipe(case["prompt"], [(p, b) for p, b in case["entities"]], negative_prompt=case["negative"],
                  true_cfg_scale=case["cfg"], cfg_normalize=False, eligen_on_negative=case["on_negative"], height=size,
                  width=size, num_inference_steps=case["steps"], generator=torch.Generator("cpu").manual_seed(case["seed"]),
                  output_type="latent").images
    return pipe._unpack_latents(packed, size, size, pipe.vae_scale_factor)[:, :, 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--record", action="store_true", help="write the DiffSynth latents as goldens")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    _stub_torchvision()
    import diffusers
    import torch
    import transformers
    from diffsynth.models import qwen_image_dit as dit_module
    from safetensors.torch import save_file

    from mllm_guidance.backends.layout_pipelines.eligen_qwen_pipeline import EliGenQwenImagePipeline
    from tests.backends import golden_models

    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        model = golden_models.tiny_qwen_image(Path(tmp) / "qwen-image")
        fingerprint = golden_models.fingerprint_folder(model)
        ours = EliGenQwenImagePipeline.from_pretrained(model)
        ours.set_progress_bar_config(disable=True)
        theirs = diffsynth_pipeline(model)
        published = dit_module.ApproximateGELU.forward
        for name, case in CASES.items():
            mine = run_project(ours, case)
            as_published = run_diffsynth(theirs, case)
            dit_module.ApproximateGELU.forward = lambda self, x: torch.nn.functional.gelu(self.proj(x), approximate="tanh")
            try:
                aligned = run_diffsynth(theirs, case)
            finally:
                dit_module.ApproximateGELU.forward = published
            plain = run_project(ours, {**case, "entities": []})  # a control: what the entities change at all
            print(f"{name}: max |diff| of final latents, EliGen alone (tanh GELU on both sides): "
                  f"{(mine - aligned).abs().max().item():.3g}; with DiffSynth's sigmoid GELU as published: "
                  f"{(mine - as_published).abs().max().item():.3g}; control, the project's without entities: "
                  f"{(plain - aligned).abs().max().item():.3g} (latent scale: max |x| {aligned.abs().max().item():.3g})")
            if args.record:
                out = golden_models.GOLDEN / f"{name}.safetensors"
                meta = {"case": json.dumps(case), "authors_repo": AUTHORS[0], "authors_commit": AUTHORS[1],
                        "fingerprint": fingerprint, "activation": "tanh GELU (DiffSynth's ApproximateGELU replaced; see the script)",
                        "versions": f"torch {torch.__version__}, diffusers {diffusers.__version__}, "
                                    f"transformers {transformers.__version__}"}
                save_file({"latents": aligned.float().contiguous()}, str(out), metadata=meta)
                print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
