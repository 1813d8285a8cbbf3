#!/usr/bin/env python
"""Record golden outputs of the AUTHORS' layout pipelines on the tests' tiny seeded models (run by hand).

The project reimplements three published pipelines; ``tests/backends/test_goldens.py`` checks the
project's against the tensors this script writes to ``tests/backends/golden/``, so a diffusers
upgrade cannot make them drift unseen. Nothing of the authors' code is in this repository: the script
runs the authors' checkouts that you name, each in a child process with the environment they
published, and keeps only their final latents.

* regional-flux: instantX-research/Regional-Prompting-FLUX at commit 60111799b14643a0df8ff3fd0d4defecdd8c55f0,
  ``pipeline_flux_regional.py`` with their ``transformer_flux.py`` copied over diffusers' own, as their
  README installs it. Their README pins diffusers 0.31.dev (commit d13b0d63); this script was run with
  the PyPI release diffusers==0.31.0, transformers==4.46.3, tokenizers==0.20.3, huggingface_hub==0.26.2
  (diffusers 0.31 does not import under transformers 5). Make that site folder with
  ``pip install --no-deps --target SITE diffusers==0.31.0 transformers==4.46.3 tokenizers==0.20.3
  huggingface_hub==0.26.2`` and copy their ``transformer_flux.py`` to
  ``SITE/diffusers/models/transformers/transformer_flux.py``.
* gligen-xl: IGLIGEN-XL's ``pipeline_gligen_sdxl.py`` (``StableDiffusionXLGLIGENPipeline``, committed by its
  author Hoe Jiun Tian in cgturhan/igligen-xl at commit f39d0f8827a9ff070484f17ca474510fbb1e8c01; the
  same pipeline ``jiuntian/gligen-xl-1024`` loads with ``trust_remote_code``), in the project's environment
  (its README says "tested with diffusers==0.30.1"; ``--gligen-xl-site`` to use another).
* sd-gligen, sd-gligen-pndm: diffusers' own ``StableDiffusionGLIGENPipeline``, the one the project's
  ``gligen`` backend used before it owned the pipeline: ``src/diffusers/pipelines/deprecated/
  stable_diffusion_gligen/pipeline_stable_diffusion_gligen.py`` of huggingface/diffusers, recorded with
  the PyPI release diffusers==0.42.1 (tag v0.42.1; the golden keeps the file's sha256), in the project's
  environment (``--sd-gligen-site`` to use another diffusers that still ships the class).
* creatilayout: HuiZhang0812/CreatiLayout at commit 860d8bdd7928b1f7632d532f6ea2f8b39a61d16d,
  ``src/pipeline/pipeline_sd3_CreatiLayout.py`` and ``src/models/transformer_sd3_SiamLayout.py``; their
  requirements pin nothing, so it runs in the project's own environment (``--creatilayout-site`` to
  use another).

The EliGen goldens (``eligen-qwen*``) come from ``scripts/compare_eligen_diffsynth.py``: their authors'
code is a PyPI package (``diffsynth``), run in this process beside the project's pipeline.

Usage::

    python scripts/record_goldens.py --regional-flux ~/src/Regional-Prompting-FLUX --regional-flux-site SITE \\
        --creatilayout ~/src/CreatiLayout --gligen-xl ~/src/igligen-xl --sd-gligen

Each golden is a safetensors file with the latents and, as metadata, the inputs, the authors' repository
and commit, the versions it ran with and a fingerprint of the tiny model's weights (the test tells a
changed tiny model from a drifted pipeline by it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "backends" / "golden"
REGIONAL_FLUX = ("instantX-research/Regional-Prompting-FLUX", "60111799b14643a0df8ff3fd0d4defecdd8c55f0")
CREATILAYOUT = ("HuiZhang0812/CreatiLayout", "860d8bdd7928b1f7632d532f6ea2f8b39a61d16d")
GLIGEN_XL = ("cgturhan/igligen-xl", "f39d0f8827a9ff070484f17ca474510fbb1e8c01")
SD_GLIGEN = ("huggingface/diffusers", "v0.42.1")  # the child records the version it really ran
SD_GLIGEN_FILE = "src/diffusers/pipelines/deprecated/stable_diffusion_gligen/pipeline_stable_diffusion_gligen.py"

#: The cases, shared with the test (which reads them back from each golden's metadata).
CASES: dict[str, dict] = {
    "regional-flux-apart": dict(prompt="a cat and a dog", regions=[["a cat", [0, 0, 32, 64]], ["a dog", [32, 0, 64, 32]]],
                                size=64, steps=4, mask_inject_steps=2, guidance=3.5, base_ratio=0.2, seed=0),
    "regional-flux-overlap": dict(prompt="a cat and a dog", regions=[["a cat", [0, 0, 32, 32]], ["a dog", [16, 16, 48, 48]]],
                                  size=64, steps=4, mask_inject_steps=2, guidance=3.5, base_ratio=0.2, seed=0),
    "gligen-xl": dict(prompt="a cat and a dog", regions=[["a cat", [0.1, 0.2, 0.5, 0.9]], ["a dog", [0.5, 0.4, 0.95, 0.95]]],
                      size=64, steps=4, guidance=5.0, beta=0.5, seed=0),
    # DDIM (the tiny model's own scheduler), classifier-free guidance, half the steps grounded
    "sd-gligen": dict(prompt="a cat and a dog", regions=[["a cat", [0.1, 0.2, 0.5, 0.9]], ["a dog", [0.5, 0.4, 0.95, 0.95]]],
                      size=64, steps=4, guidance=7.5, beta=0.5, seed=0, scheduler="ddim", negative=None, per_prompt=1),
    # PNDM as SD 1.x checkpoints ship it (5 timesteps for 4 steps: beta counts timesteps), a negative
    # prompt, two images per prompt
    "sd-gligen-pndm": dict(prompt="a red ball on a table", regions=[["a red ball", [0.3, 0.2, 0.7, 0.5]], ["a table", [0.0, 0.5, 1.0, 1.0]]],
                           size=64, steps=4, guidance=5.0, beta=0.6, seed=1, scheduler="pndm", negative="blurry", per_prompt=2),
    "creatilayout-sd3": dict(prompt="a cat on a sofa", regions=[["a grey cat", [0.1, 0.2, 0.6, 0.9]], ["a sofa", [0.0, 0.5, 1.0, 1.0]]],
                             size=64, steps=4, guidance=7.5, seed=0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--regional-flux", type=Path, help="checkout of Regional-Prompting-FLUX at the commit above")
    parser.add_argument("--regional-flux-site", type=Path, help="site folder with diffusers 0.31 and their transformer_flux.py")
    parser.add_argument("--creatilayout", type=Path, help="checkout of CreatiLayout at the commit above")
    parser.add_argument("--creatilayout-site", type=Path, help="site folder to run CreatiLayout with (default: this environment)")
    parser.add_argument("--gligen-xl", type=Path, help="a folder holding IGLIGEN-XL's pipeline_gligen_sdxl.py (commit above)")
    parser.add_argument("--gligen-xl-site", type=Path, help="site folder to run it with (default: this environment)")
    parser.add_argument("--sd-gligen", action="store_true", help="record diffusers' StableDiffusionGLIGENPipeline")
    parser.add_argument("--sd-gligen-site", type=Path, help="site folder with a diffusers that has it (default: this environment)")
    args = parser.parse_args()
    GOLDEN.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from tests.backends import golden_models

    with tempfile.TemporaryDirectory() as tmp:
        if args.regional_flux:
            _check_commit(args.regional_flux, REGIONAL_FLUX[1])
            model = golden_models.tiny_flux_dev(Path(tmp) / "flux")
            for name in ("regional-flux-apart", "regional-flux-overlap"):
                _child("regional_flux", args.regional_flux, args.regional_flux_site, model, name, REGIONAL_FLUX,
                       golden_models.fingerprint_folder(model))
        if args.creatilayout:
            _check_commit(args.creatilayout, CREATILAYOUT[1])
            model = golden_models.tiny_creatilayout_sd3(Path(tmp) / "sd3")
            _child("creatilayout_sd3", args.creatilayout, args.creatilayout_site, model, "creatilayout-sd3", CREATILAYOUT,
                   golden_models.fingerprint_folder(model))
        if args.gligen_xl:  # one file, not a checkout: its commit is the one named above
            model = golden_models.tiny_gligen_xl(Path(tmp) / "gligen-xl")
            _child("gligen_xl", args.gligen_xl, args.gligen_xl_site, model, "gligen-xl", GLIGEN_XL,
                   golden_models.fingerprint_folder(model))
        if args.sd_gligen:  # diffusers itself: no checkout
            model = golden_models.tiny_sd_gligen(Path(tmp) / "sd-gligen")
            for name in ("sd-gligen", "sd-gligen-pndm"):
                _child("sd_gligen", None, args.sd_gligen_site, model, name, SD_GLIGEN, golden_models.fingerprint_folder(model))


def _check_commit(repo: Path, commit: str) -> None:
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if head != commit:
        sys.exit(f"{repo} is at {head or 'no git commit'}; check out {commit} first")


def _child(kind: str, repo: Path | None, site: Path | None, model: Path, case: str, source: tuple[str, str], fingerprint: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (site, repo) if p)  # not this repository
    out = GOLDEN / f"{case}.safetensors"
    meta = {"case": json.dumps(CASES[case]), "authors_repo": source[0], "authors_commit": source[1], "fingerprint": fingerprint}
    subprocess.run([sys.executable, __file__, "--child", kind, str(repo or ""), str(model), str(out), json.dumps(meta)],
                   env=env, check=True, cwd=tempfile.gettempdir())
    print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size} bytes)")


# ---- what runs inside the authors' environment: their code, and diffusers/transformers only ----

def _save(latents, out: str, meta: dict) -> None:
    import diffusers
    import torch
    import transformers
    from safetensors.torch import save_file

    meta = {**meta, "versions": f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}"}
    save_file({"latents": latents.detach().float().contiguous().cpu()}, out, metadata=meta)


def _fast_tokenizers(model: str, *names: str) -> dict:
    """The tiny tokenizers as saved by transformers 5 (tokenizer.json only), read by the fast classes of
    older transformers (the same ``tokenizers`` vocabulary, so the same ids)."""
    from transformers import AutoTokenizer, CLIPTokenizerFast, T5TokenizerFast

    kinds = {"CLIPTokenizer": CLIPTokenizerFast, "T5Tokenizer": T5TokenizerFast}
    out = {}
    for name in names:
        config = json.loads((Path(model) / name / "tokenizer_config.json").read_text())
        cls = kinds.get(config.get("tokenizer_class", ""), AutoTokenizer)
        out[name] = cls.from_pretrained(model, subfolder=name)
    return out


def _text_encoder(cls, model: str, name: str):
    """A text encoder saved by transformers 5 (CLIP's keys lost their ``text_model.`` prefix), loaded by an
    older transformers with every weight checked: only tied copies may be absent from the file."""
    from safetensors.torch import load_file

    encoder = cls(cls.config_class.from_pretrained(model, subfolder=name))
    saved = load_file(str(Path(model) / name / "model.safetensors"))
    expected = set(encoder.state_dict())
    if not set(saved) <= expected:
        saved = {f"text_model.{k}": v for k, v in saved.items()}
    missing, unexpected = encoder.load_state_dict(saved, strict=False)
    tied = {"encoder.embed_tokens.weight"} if "shared.weight" in saved else set()
    if unexpected or set(missing) - tied:
        raise SystemExit(f"{name}: missing {missing}, unexpected {unexpected}")
    return encoder.eval()


def child_regional_flux(repo: str, model: str, out: str, meta: dict) -> None:
    import torch
    from pipeline_flux_regional import RegionalFluxAttnProcessor2_0, RegionalFluxPipeline  # their code
    case = json.loads(meta["case"])
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel  # theirs, in this site
    from transformers import CLIPTextModel, T5EncoderModel

    pipe = RegionalFluxPipeline(  # assembled by hand: the tokenizers' classes differ from model_index.json's
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(model, subfolder="scheduler"),
        vae=AutoencoderKL.from_pretrained(model, subfolder="vae"),
        text_encoder=_text_encoder(CLIPTextModel, model, "text_encoder"),
        text_encoder_2=_text_encoder(T5EncoderModel, model, "text_encoder_2"),
        transformer=FluxTransformer2DModel.from_pretrained(model, subfolder="transformer"),
        **_fast_tokenizers(model, "tokenizer", "tokenizer_2"))
    procs = {name: RegionalFluxAttnProcessor2_0() if "transformer_blocks" in name and name.endswith("attn.processor") else proc
             for name, proc in pipe.transformer.attn_processors.items()}
    pipe.transformer.set_attn_processor(procs)
    size = case["size"]
    # as their infer_flux_regional.py builds masks from pixel boxes, with "a photo" where the sum says background
    prompts, masks, background = [], [], torch.ones((size, size))
    for phrase, (x1, y1, x2, y2) in case["regions"]:
        mask = torch.zeros((size, size))
        mask[y1:y2, x1:x2] = 1.0
        background -= mask
        prompts.append(phrase)
        masks.append(mask)
    if background.sum() > 0:
        prompts.append("a photo")
        masks.append(background)
    latents = pipe(prompt=case["prompt"], num_samples=1, width=size, height=size, mask_inject_steps=case["mask_inject_steps"],
                   guidance_scale=case["guidance"], num_inference_steps=case["steps"],
                   generator=torch.Generator("cpu").manual_seed(case["seed"]), output_type="latent",
                   joint_attention_kwargs={"regional_prompts": prompts, "regional_masks": masks, "base_ratio": case["base_ratio"],
                                           "double_inject_blocks_interval": 1, "single_inject_blocks_interval": 1}).images
    _save(latents, out, meta)


def child_creatilayout_sd3(repo: str, model: str, out: str, meta: dict) -> None:
    import torch
    from src.models.transformer_sd3_SiamLayout import SiamLayoutSD3Transformer2DModel  # their code
    from src.pipeline.pipeline_sd3_CreatiLayout import CreatiLayoutSD3Pipeline

    case = json.loads(meta["case"])
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler
    from transformers import AutoTokenizer, CLIPTextModelWithProjection, T5EncoderModel

    transformer = SiamLayoutSD3Transformer2DModel.from_pretrained(model, subfolder="transformer", attention_type="layout",
                                                                  strict=True)  # as their test_sample.py loads it
    pipe = CreatiLayoutSD3Pipeline(  # by hand: model_index.json names the project's transformer class
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(model, subfolder="scheduler"),
        vae=AutoencoderKL.from_pretrained(model, subfolder="vae"),
        text_encoder=CLIPTextModelWithProjection.from_pretrained(model, subfolder="text_encoder"),
        text_encoder_2=CLIPTextModelWithProjection.from_pretrained(model, subfolder="text_encoder_2"),
        text_encoder_3=T5EncoderModel.from_pretrained(model, subfolder="text_encoder_3"),
        tokenizer=AutoTokenizer.from_pretrained(model, subfolder="tokenizer"),
        tokenizer_2=AutoTokenizer.from_pretrained(model, subfolder="tokenizer_2"),
        tokenizer_3=AutoTokenizer.from_pretrained(model, subfolder="tokenizer_3"))
    size = case["size"]
    latents = pipe(prompt=case["prompt"], generator=torch.Generator("cpu").manual_seed(case["seed"]),
                   num_inference_steps=case["steps"], guidance_scale=case["guidance"],
                   bbox_phrases=[p for p, _ in case["regions"]], bbox_raw=[b for _, b in case["regions"]],
                   height=size, width=size, output_type="latent").images
    _save(latents, out, meta)


def child_gligen_xl(repo: str, model: str, out: str, meta: dict) -> None:
    import diffusers
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from pipeline_gligen_sdxl import StableDiffusionXLGLIGENPipeline  # their code
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

    case = json.loads(meta["case"])
    scheduler = json.loads((Path(model) / "scheduler" / "scheduler_config.json").read_text())["_class_name"]
    pipe = StableDiffusionXLGLIGENPipeline(  # by hand: model_index.json names the project's pipeline class
        vae=AutoencoderKL.from_pretrained(model, subfolder="vae"),
        text_encoder=CLIPTextModel.from_pretrained(model, subfolder="text_encoder"),
        text_encoder_2=CLIPTextModelWithProjection.from_pretrained(model, subfolder="text_encoder_2"),
        tokenizer=AutoTokenizer.from_pretrained(model, subfolder="tokenizer"),
        tokenizer_2=AutoTokenizer.from_pretrained(model, subfolder="tokenizer_2"),
        unet=UNet2DConditionModel.from_pretrained(model, subfolder="unet"),
        scheduler=getattr(diffusers, scheduler).from_pretrained(model, subfolder="scheduler"))
    size = case["size"]
    latents = pipe(case["prompt"], height=size, width=size, num_inference_steps=case["steps"], guidance_scale=case["guidance"],
                   gligen_scheduled_sampling_beta=case["beta"], gligen_phrases=[p for p, _ in case["regions"]],
                   gligen_boxes=[b for _, b in case["regions"]], generator=torch.Generator("cpu").manual_seed(case["seed"]),
                   output_type="latent").images
    _save(latents, out, meta)


def child_sd_gligen(repo: str, model: str, out: str, meta: dict) -> None:
    import hashlib
    import inspect

    import diffusers
    import torch
    from diffusers import PNDMScheduler, StableDiffusionGLIGENPipeline  # diffusers' deprecated class

    case = json.loads(meta["case"])
    source = Path(inspect.getfile(StableDiffusionGLIGENPipeline))
    if not source.as_posix().endswith(SD_GLIGEN_FILE.removeprefix("src/")):
        raise SystemExit(f"diffusers' StableDiffusionGLIGENPipeline is in {source}, not {SD_GLIGEN_FILE}: update this script")
    meta = {**meta, "authors_commit": f"v{diffusers.__version__}", "authors_file": SD_GLIGEN_FILE,
            "authors_file_sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    pipe = StableDiffusionGLIGENPipeline.from_pretrained(model)
    if case["scheduler"] == "pndm":
        pipe.scheduler = PNDMScheduler.from_config(pipe.scheduler.config, skip_prk_steps=True)
    size = case["size"]
    latents = pipe(case["prompt"], height=size, width=size, num_inference_steps=case["steps"], guidance_scale=case["guidance"],
                   gligen_scheduled_sampling_beta=case["beta"], gligen_phrases=[p for p, _ in case["regions"]],
                   gligen_boxes=[b for _, b in case["regions"]], negative_prompt=case["negative"],
                   num_images_per_prompt=case["per_prompt"], generator=torch.Generator("cpu").manual_seed(case["seed"]),
                   output_type="latent").images
    _save(latents, out, meta)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, repo, model, out, meta = sys.argv[2:7]
        globals()[f"child_{kind}"](repo, model, out, json.loads(meta))
    else:
        main()
