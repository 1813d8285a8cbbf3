"""Region repair on tiny random GLIGEN, GLIGEN-XL, regional FLUX, CreatiLayout (SD3, FLUX), EliGen Qwen-Image and SD pipelines:
the masked path of each backend."""

import numpy as np
import pytest

pytest.importorskip("diffusers")

from mllm_guidance.backends.generator import GenerationRequest, shared_settings  # noqa: E402
from mllm_guidance.backends.gligen import GligenGenerator  # noqa: E402
from mllm_guidance.backends.gligen_xl import GligenXLGenerator  # noqa: E402
from mllm_guidance.layout import Layout  # noqa: E402
from mllm_guidance.repair import RepairInput, composite, pixel_mask, plan_repair  # noqa: E402
from tests.backends.tiny_diffusion import build_tiny_gligen, build_tiny_gligen_xl  # noqa: E402

OLD = Layout.from_pairs([("a cat", [0.05, 0.05, 0.4, 0.4]), ("a dog", [0.55, 0.55, 0.95, 0.95])])
NEW = Layout.from_pairs([("a cat", [0.05, 0.55, 0.4, 0.95]), ("a dog", [0.55, 0.55, 0.95, 0.95])])  # the cat moved down


@pytest.fixture(scope="module", params=["gligen", "gligen-xl", "regional-flux", "creatilayout-sd3", "creatilayout-flux",
                                        "eligen-qwen"])
def backend(request, tmp_path_factory):
    if request.param == "eligen-qwen":
        from mllm_guidance.backends.eligen_qwen import EliGenQwenGenerator
        from tests.backends.tiny_qwen_image import build_tiny_qwen_image

        return EliGenQwenGenerator(str(build_tiny_qwen_image(tmp_path_factory.mktemp("eq"))), steps=4)
    if request.param.startswith("creatilayout"):
        from mllm_guidance.backends.creatilayout import CreatiLayoutGenerator
        from tests.backends.tiny_dit import build_tiny_creatilayout_flux, build_tiny_creatilayout_sd3

        build = build_tiny_creatilayout_sd3 if request.param.endswith("sd3") else build_tiny_creatilayout_flux
        return CreatiLayoutGenerator(str(build(tmp_path_factory.mktemp("cl"))), steps=4, grounding_share=1.0,
                                     max_sequence_length=32)
    if request.param == "gligen":
        return GligenGenerator(str(build_tiny_gligen(tmp_path_factory.mktemp("g"))), steps=4, beta=1.0)
    if request.param == "regional-flux":
        from mllm_guidance.backends.regional_flux import RegionalFluxGenerator
        from tests.backends.tiny_dit import build_tiny_flux

        return RegionalFluxGenerator(str(build_tiny_flux(tmp_path_factory.mktemp("rf"))), steps=4, mask_share=1.0,
                                     max_sequence_length=32)
    return GligenXLGenerator(str(build_tiny_gligen_xl(tmp_path_factory.mktemp("gxl"))), steps=4, beta=1.0)


def req(layout, seed=0, repair=None):
    return GenerationRequest(prompt="a cat and a dog", layout=layout, seed=seed, width=64, height=64, repair=repair)


def px(image):
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def base_and_plan(backend):
    base = backend.generate(req(OLD)).image
    plan = plan_repair(OLD, NEW, margin=0.05)
    return base, plan, RepairInput(image=base, boxes=tuple(tuple(b) for b in plan.boxes), key="base-0")


def test_the_mask_is_the_old_and_new_box_of_the_moved_cat(base_and_plan):
    _, plan, _ = base_and_plan
    assert plan.changed == ["moved: a cat"] and plan.boxes == [[0.0, 0.0, 0.45, 0.45], [0.0, 0.5, 0.45, 1.0]]
    assert plan.share == pytest.approx(0.45 * 0.95)


def test_outside_the_mask_is_identical_and_inside_changes(backend, base_and_plan):
    base, plan, repair = base_and_plan
    repaired = composite(backend.generate(req(NEW, repair=repair)).image, base, plan.boxes)
    inside = np.asarray(pixel_mask(plan.boxes, base.size)) > 0
    assert inside.any() and (~inside).any()
    assert (px(repaired)[~inside] == px(base)[~inside]).all()  # exact
    assert np.abs(px(repaired)[inside] - px(base)[inside]).sum() > 0


def test_the_latents_outside_the_mask_are_the_originals(backend, base_and_plan):
    """Before the pixel composite: two repairs with other seeds agree outside the mask more than two
    full renders with those seeds do (the blended latents are the image's there; the random VAE's
    mid-block attention spreads the inside over every pixel, so the gap shrinks without vanishing;
    the exact latent identity is ``test_the_final_latents_outside_the_mask_are_the_images``)."""
    base, plan, repair = base_and_plan
    inside = np.asarray(pixel_mask(plan.boxes, base.size)) > 0
    r1, r2 = (px(backend.generate(req(NEW, seed=s, repair=repair)).image) for s in (1, 2))
    f1, f2 = (px(backend.generate(req(NEW, seed=s)).image) for s in (1, 2))
    repaired_gap = np.abs(r1 - r2)[~inside].mean()
    fresh_gap = np.abs(f1 - f2)[~inside].mean()
    assert fresh_gap > 0 and repaired_gap < 0.8 * fresh_gap


def test_the_repair_is_grounded_on_the_new_box(backend, base_and_plan):
    base, plan, repair = base_and_plan
    inside = np.asarray(pixel_mask(plan.boxes, base.size)) > 0
    grounded = px(backend.generate(req(NEW, repair=repair)).image)
    ungrounded = px(backend.generate(req(Layout(), repair=repair)).image)
    assert np.abs(grounded - ungrounded)[inside].sum() > 0


def test_a_batch_of_repairs_equals_its_lone_repairs(backend, base_and_plan):
    _, _, repair = base_and_plan
    requests = [req(NEW, seed=s, repair=repair) for s in (3, 4, 5)]
    assert len({backend.batch_key(r) for r in requests}) == 1
    assert shared_settings(requests[0]) != shared_settings(req(NEW, seed=3))  # repairs never mix with renders
    batched = backend.generate_batch(requests)
    for r, b in zip(requests, batched, strict=True):
        assert np.abs(px(backend.generate(r).image) - px(b.image)).max() <= 2


def test_generate_with_repair_on_tiny_pipelines(tmp_path, capsys):
    """``generate --repair regions`` on tiny GLIGEN and GLIGEN-XL: the later rounds repair the best
    image so far, its pixels outside the dilated mask are kept exactly, and the report shows the mask."""
    import json

    from mllm_guidance.cli import main
    from mllm_guidance.store import RunStore
    from tests.cli.test_cli import PROMPT, RECORDING

    for name, build in (("gligen", build_tiny_gligen), ("gligen-xl", build_tiny_gligen_xl)):
        path = build(tmp_path / f"model-{name}")
        code = main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--generator", name, "--model-path", str(path),
                     "--size", "64", "--steps", "2", "--repair", "regions", "--out", str(tmp_path / name)])
        assert code == 0, capsys.readouterr().err
        record = json.loads((tmp_path / name / "run.json").read_text())
        repaired = [r for r in record["rounds"] if (r.get("repair") or {}).get("repaired")]
        assert repaired, [r.get("repair") for r in record["rounds"]]
        store = RunStore(tmp_path / name)
        for r in repaired:
            base = record["rounds"][r["repair"]["base_round"]]
            outside = np.asarray(pixel_mask(r["repair"]["boxes"], (64, 64))) == 0
            after, before = px(store.load_image(store_ref(r))), px(store.load_image(store_ref(base)))
            assert (after[outside] == before[outside]).all() and (after[~outside] != before[~outside]).any()
        assert 'aria-label="repair mask"' in (tmp_path / name / "report.html").read_text()


def store_ref(round_record):
    from mllm_guidance.state import ImageRef

    return ImageRef.model_validate(round_record["image"])


def test_text2image_repairs_a_unet_model(tmp_path):
    from mllm_guidance.backends.text2image import Text2ImageGenerator

    gen = Text2ImageGenerator(str(build_tiny_gligen(tmp_path / "sd", gated=False)))
    assert gen.supports_repair
    base = gen.generate(GenerationRequest(prompt="a cat", layout=None, seed=0, width=64, height=64, steps=3)).image
    boxes = ((0.0, 0.0, 0.5, 0.5),)
    repair = RepairInput(image=base, boxes=boxes, key="b")
    requests = [GenerationRequest(prompt="a dog", layout=None, seed=s, width=64, height=64, steps=3, repair=repair) for s in (1, 2)]
    lone = [gen.generate(r).image for r in requests]
    inside = np.asarray(pixel_mask(boxes, base.size)) > 0
    fixed = px(composite(lone[0], base, boxes))
    assert (fixed[~inside] == px(base)[~inside]).all() and (fixed[inside] != px(base)[inside]).any()
    for a, b in zip(lone, gen.generate_batch(requests), strict=True):
        assert np.abs(px(a) - px(b.image)).max() <= 2


@pytest.mark.parametrize("kind", ["ddim", "euler", "flow"])
def test_the_final_latents_outside_the_mask_are_the_images(kind):
    """A denoising loop with random model outputs and each blend: after the last step the latents
    outside the mask are exactly the image's, inside they are the model's."""
    import torch
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

    from mllm_guidance.backends.latent_blend import FlowBlend, LatentBlend

    scheduler = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "flow": FlowMatchEulerDiscreteScheduler}[kind]()
    scheduler.set_timesteps(5)
    torch.manual_seed(0)
    image, noise = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :4] = 1
    blend = (FlowBlend if kind == "flow" else LatentBlend)(image, mask, noise)

    class Pipe:
        pass

    pipe = Pipe()
    pipe.scheduler = scheduler
    latents = noise * getattr(scheduler, "init_noise_sigma", 1.0)
    for i, t in enumerate(scheduler.timesteps):
        latents = scheduler.step(torch.randn(1, 4, 8, 8), t, latents, return_dict=False)[0]
        latents = blend(pipe, i, t, {"latents": latents})["latents"]
    outside = mask.expand_as(latents) == 0
    assert torch.equal(latents[outside], image[outside]) and not torch.allclose(latents[~outside], image[~outside])
