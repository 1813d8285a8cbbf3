"""The project's reimplemented pipelines against golden outputs of the authors' code on the same tiny
seeded models (recorded by hand with ``scripts/record_goldens.py``; each golden names the authors'
repository and commit; for SD GLIGEN, diffusers' deprecated pipeline, its version and file). A diffusers
upgrade that moves a pipeline away from the authors' fails here."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("diffusers")

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402

from tests.backends import golden_models  # noqa: E402

#: The equality shown when these pipelines were written: float rounding between diffusers versions.
TOLERANCE = 2.2e-6


def golden(case: str) -> tuple[torch.Tensor, dict]:
    with safe_open(str(golden_models.GOLDEN / f"{case}.safetensors"), "pt") as f:
        meta = f.metadata()
        return f.get_tensor("latents"), {**meta, "case": json.loads(meta["case"])}


def check_model(folder, meta: dict) -> None:
    if golden_models.fingerprint_folder(folder) != meta["fingerprint"]:
        pytest.fail(f"the tiny model no longer matches the one the golden was recorded on "
                    f"({meta['authors_repo']}@{meta['authors_commit'][:8]}): rerun scripts/record_goldens.py")


@pytest.fixture(scope="module")
def flux_pipe(tmp_path_factory):
    from mllm_guidance.backends.layout_pipelines.regional_flux_pipeline import RegionalFluxPipeline

    folder = golden_models.tiny_flux_dev(tmp_path_factory.mktemp("golden-flux"))
    check_model(folder, golden("regional-flux-apart")[1])
    return RegionalFluxPipeline.from_pretrained(folder)


def regional_flux_latents(pipe, case: dict, overlap: str) -> torch.Tensor:
    size = case["size"]
    regions = [(phrase, [v / size for v in box]) for phrase, box in case["regions"]]
    return pipe(case["prompt"], regions, height=size, width=size, num_inference_steps=case["steps"],
                guidance_scale=case["guidance"], generator=torch.Generator("cpu").manual_seed(case["seed"]),
                max_sequence_length=512, mask_inject_steps=case["mask_inject_steps"], base_ratio=case["base_ratio"],
                overlap=overlap, output_type="latent").images


def test_regional_flux_matches_the_authors_on_boxes_apart(flux_pipe):
    expected, meta = golden("regional-flux-apart")
    for overlap in ("union", "authors"):  # without overlap the fix changes nothing
        got = regional_flux_latents(flux_pipe, meta["case"], overlap)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= TOLERANCE, overlap


def test_regional_flux_reproduces_the_authors_overlap_only_when_asked(flux_pipe):
    expected, meta = golden("regional-flux-overlap")
    authors = regional_flux_latents(flux_pipe, meta["case"], "authors")
    assert (authors - expected).abs().max().item() <= TOLERANCE
    fixed = regional_flux_latents(flux_pipe, meta["case"], "union")
    assert (fixed - expected).abs().max().item() > 1e-3  # overlap pixels are the boxes', not background


def test_creatilayout_sd3_matches_the_authors(tmp_path):
    from mllm_guidance.backends.layout_pipelines.siamlayout_sd3 import CreatiLayoutSD3Pipeline

    expected, meta = golden("creatilayout-sd3")
    folder = golden_models.tiny_creatilayout_sd3(tmp_path / "sd3")
    check_model(folder, meta)
    case = meta["case"]
    pipe = CreatiLayoutSD3Pipeline.from_pretrained(folder)
    got = pipe(case["prompt"], [tuple(r) for r in case["regions"]], height=case["size"], width=case["size"],
               num_inference_steps=case["steps"], guidance_scale=case["guidance"],
               generator=torch.Generator("cpu").manual_seed(case["seed"]), output_type="latent").images
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= TOLERANCE


def test_gligen_xl_is_bit_identical_to_the_authors(tmp_path):
    from mllm_guidance.backends.gligen_xl import load_gligen_xl

    expected, meta = golden("gligen-xl")
    folder = golden_models.tiny_gligen_xl(tmp_path / "gligen-xl")
    check_model(folder, meta)
    case = meta["case"]
    pipe = load_gligen_xl(str(folder))
    got = pipe(case["prompt"], height=case["size"], width=case["size"], num_inference_steps=case["steps"],
               guidance_scale=case["guidance"], gligen_scheduled_sampling_beta=case["beta"],
               gligen_phrases=[p for p, _ in case["regions"]], gligen_boxes=[b for _, b in case["regions"]],
               generator=torch.Generator("cpu").manual_seed(case["seed"]), output_type="latent").images
    assert torch.equal(got, expected)


@pytest.mark.parametrize("case_name", ["sd-gligen", "sd-gligen-pndm"])
def test_sd_gligen_is_bit_identical_to_diffusers_deprecated_pipeline(case_name, tmp_path):
    from diffusers import PNDMScheduler

    from mllm_guidance.backends.gligen import load_gligen

    expected, meta = golden(case_name)
    assert meta["authors_repo"] == "huggingface/diffusers" and meta["authors_file"].endswith("pipeline_stable_diffusion_gligen.py")
    folder = golden_models.tiny_sd_gligen(tmp_path / "sd-gligen")
    check_model(folder, meta)
    case = meta["case"]
    pipe = load_gligen(str(folder))
    if case["scheduler"] == "pndm":
        pipe.scheduler = PNDMScheduler.from_config(pipe.scheduler.config, skip_prk_steps=True)
    got = pipe(case["prompt"], height=case["size"], width=case["size"], num_inference_steps=case["steps"],
               guidance_scale=case["guidance"], gligen_scheduled_sampling_beta=case["beta"],
               gligen_phrases=[p for p, _ in case["regions"]], gligen_boxes=[b for _, b in case["regions"]],
               negative_prompt=case["negative"], num_images_per_prompt=case["per_prompt"],
               generator=torch.Generator("cpu").manual_seed(case["seed"]), output_type="latent").images
    assert got.shape == expected.shape
    assert torch.equal(got, expected), (got - expected).abs().max().item()
    if case["scheduler"] == "pndm":  # 5 timesteps for 4 steps: beta 0.6 grounds 3 of them (of steps: 2)
        assert len(pipe.scheduler.timesteps) == case["steps"] + 1


def test_the_two_overlap_rules_on_token_masks():
    from mllm_guidance.backends.layout_pipelines.regional_flux_pipeline import background_mask, region_token_masks

    boxes = [[0, 0, 0.5, 0.5], [0.25, 0.25, 0.75, 0.75]]  # 4 x 4 tokens; token (1, 1) is in both boxes
    masks = region_token_masks(boxes, 64, 64, 16)
    union = background_mask(masks, boxes, 64, 64, "union").view(4, 4)
    authors = background_mask(masks, boxes, 64, 64, "authors").view(4, 4)
    assert not union[1, 1] and authors[1, 1]  # theirs counts the overlap as background too
    assert torch.equal(union | authors, authors) and int((authors & ~union).sum()) == 1
    big = [[0, 0, 0.75, 1.0], [0.25, 0, 1.0, 0.5]]  # pixels outside both, but the areas sum past the image
    assert background_mask(region_token_masks(big, 64, 64, 16), big, 64, 64, "authors") is None
    assert background_mask(region_token_masks(big, 64, 64, 16), big, 64, 64, "union") is not None
    tiny = [[0.01, 0.01, 0.05, 0.05]]  # smaller than a token: kept under its centre only by the fix
    assert region_token_masks(tiny, 64, 64, 16).any() and not region_token_masks(tiny, 64, 64, 16, keep_small=False).any()
    with pytest.raises(ValueError, match="overlap must be"):
        background_mask(masks, boxes, 64, 64, "both")


def test_regional_flux_generator_refuses_an_unknown_overlap_rule():
    from mllm_guidance.backends.regional_flux import RegionalFluxGenerator
    from mllm_guidance.errors import BackendError

    with pytest.raises(BackendError, match="overlap must be 'union'"):
        RegionalFluxGenerator("/nonexistent", overlap="max")


@pytest.mark.parametrize("case", ["eligen-qwen", "eligen-qwen-negative"])
def test_eligen_qwen_matches_diffsynth(tmp_path, case):
    """DiffSynth-Studio's EliGen on the tiny Qwen-Image (``scripts/compare_eligen_diffsynth.py``: its
    activation set to the tanh GELU of diffusers' transformer, so that EliGen alone is compared)."""
    from mllm_guidance.backends.layout_pipelines.eligen_qwen_pipeline import EliGenQwenImagePipeline

    expected, meta = golden(case)
    folder = golden_models.tiny_qwen_image(tmp_path / "qwen-image")
    check_model(folder, meta)
    c = meta["case"]
    pipe = EliGenQwenImagePipeline.from_pretrained(folder)
    packed = pipe(c["prompt"], [tuple(e) for e in c["entities"]], negative_prompt=c["negative"], true_cfg_scale=c["cfg"],
                  cfg_normalize=False, eligen_on_negative=c["on_negative"], height=c["size"], width=c["size"],
                  num_inference_steps=c["steps"], generator=torch.Generator("cpu").manual_seed(c["seed"]),
                  output_type="latent").images
    got = pipe._unpack_latents(packed, c["size"], c["size"], pipe.vae_scale_factor)[:, :, 0]
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= TOLERANCE
    if not c["on_negative"]:  # the mask matters: dropping the entities moves the latents far past the tolerance
        plain = pipe(c["prompt"], negative_prompt=c["negative"], true_cfg_scale=c["cfg"], cfg_normalize=False,
                     height=c["size"], width=c["size"], num_inference_steps=c["steps"],
                     generator=torch.Generator("cpu").manual_seed(c["seed"]), output_type="latent").images
        assert (pipe._unpack_latents(plain, c["size"], c["size"], pipe.vae_scale_factor)[:, :, 0] - expected).abs().max() > 1e-2
