"""regional-flux and creatilayout (SD3 and FLUX) on tiny random-weight DiT pipelines, through the real
diffusers code: the backends, the project's pipelines, the whole graph and the command line."""

import numpy as np
import pytest

pytest.importorskip("diffusers")

import torch  # noqa: E402

from mllm_guidance import guide  # noqa: E402
from mllm_guidance.backends.creatilayout import CreatiLayoutGenerator, creatilayout_license, load_creatilayout  # noqa: E402
from mllm_guidance.backends.generator import GenerationRequest  # noqa: E402
from mllm_guidance.backends.registry import create_generator  # noqa: E402
from mllm_guidance.backends.regional_flux import RegionalFluxGenerator, flux_license  # noqa: E402
from mllm_guidance.cli import main  # noqa: E402
from mllm_guidance.errors import BackendError  # noqa: E402
from mllm_guidance.layout import Layout  # noqa: E402
from tests.backends.tiny_diffusion import build_tiny_gligen  # noqa: E402
from tests.backends.tiny_dit import build_tiny_creatilayout_flux, build_tiny_creatilayout_sd3, build_tiny_flux  # noqa: E402

LAYOUT = Layout.from_pairs([("a cat", [0.05, 0.1, 0.5, 0.6]), ("a dog", [0.5, 0.4, 0.95, 0.95])])
FAST = {"steps": 1, "max_sequence_length": 32}  # short T5 sequences keep the tiny renders under a second


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    return build_tiny_flux(tmp_path_factory.mktemp("tiny-flux"))


@pytest.fixture(scope="module")
def sd3_dir(tmp_path_factory):
    return build_tiny_creatilayout_sd3(tmp_path_factory.mktemp("tiny-creatilayout-sd3"))


@pytest.fixture(scope="module")
def clflux_dir(tmp_path_factory):
    return build_tiny_creatilayout_flux(tmp_path_factory.mktemp("tiny-creatilayout-flux"))


def grounded(cls):
    """Ground every step of the short test renders (constructor options of each backend)."""
    return {"mask_share": 1.0} if cls is RegionalFluxGenerator else {"grounding_share": 1.0}


@pytest.fixture(scope="module", params=["regional-flux", "creatilayout-sd3", "creatilayout-flux"])
def backend(request, flux_dir, sd3_dir, clflux_dir):
    cls, path = {"regional-flux": (RegionalFluxGenerator, flux_dir), "creatilayout-sd3": (CreatiLayoutGenerator, sd3_dir),
                 "creatilayout-flux": (CreatiLayoutGenerator, clflux_dir)}[request.param]
    return cls(str(path), **FAST, **grounded(cls))


def req(layout=LAYOUT, seed=0, w=64, h=64, **kw):
    return GenerationRequest(prompt="a cat and a dog", layout=layout, seed=seed, width=w, height=h, **kw)


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def test_renders_seeded_and_grounded(backend):
    a, b, c = backend.generate(req()), backend.generate(req()), backend.generate(req(seed=1))
    assert a.image.size == (64, 64) and a.notes == []
    assert (pixels(a.image) == pixels(b.image)).all() and not (pixels(a.image) == pixels(c.image)).all()
    empty = backend.generate(req(layout=Layout()))
    moved = backend.generate(req(layout=Layout.from_pairs([("a cat", [0.5, 0.4, 0.95, 0.95]), ("a dog", [0.05, 0.1, 0.5, 0.6])])))
    assert empty.notes == ["empty layout: rendered without grounding"]
    assert np.abs(pixels(a.image) - pixels(empty.image)).sum() > 0  # grounding has an effect
    assert np.abs(pixels(a.image) - pixels(moved.image)).sum() > 0  # and it follows the boxes


def test_what_the_model_cannot_take_is_fitted_and_noted(backend):
    """More boxes than it takes (the largest are kept), a 200-word phrase, a size not divisible by 16."""
    limit = 16 if isinstance(backend, RegionalFluxGenerator) else 10
    objects = [(f"thing {i}", [0.02 * i, 0.02 * i, 0.02 * i + 0.1 + 0.005 * i, 0.02 * i + 0.1 + 0.005 * i])
               for i in range(limit)] + [(" ".join(["blue"] * 200), [0.1, 0.1, 0.9, 0.9])]
    out = backend.generate(req(layout=Layout.from_pairs(objects), w=70, h=90))
    tokens = {"regional-flux": 32, "sd3": 77, "flux": 12}[getattr(backend, "family", "regional-flux")]
    assert out.image.size == (64, 80) and "size 70x90 rounded to 64x80" in out.notes[0]
    assert any(f"{limit + 1} objects: kept the {limit} largest, dropped thing 0" in n for n in out.notes), out.notes
    assert any(f"cut to the text encoder's {tokens} tokens" in n for n in out.notes), out.notes


def test_creatilayout_says_when_too_few_steps_never_ground(sd3_dir):
    out = CreatiLayoutGenerator(str(sd3_dir), **FAST).generate(req())
    assert any("1 steps: the layout branch, on for the first 30% of them (rounded down), never runs" in n for n in out.notes)


def test_save_and_load_round_trip(flux_dir, sd3_dir, clflux_dir, tmp_path):
    for name, cls, path in (("rf", RegionalFluxGenerator, flux_dir), ("sd3", CreatiLayoutGenerator, sd3_dir),
                            ("flux", CreatiLayoutGenerator, clflux_dir)):
        first = cls(str(path), **FAST, **grounded(cls))
        first.pipe.save_pretrained(tmp_path / name)
        second = cls(str(tmp_path / name), **FAST, **grounded(cls))
        assert (pixels(first.generate(req()).image) == pixels(second.generate(req()).image)).all(), name


def test_unmasked_regional_flux_is_plain_flux(flux_dir):
    from diffusers import FluxPipeline

    from mllm_guidance.backends.layout_pipelines.regional_flux_pipeline import RegionalFluxPipeline

    regional = RegionalFluxPipeline.from_pretrained(str(flux_dir))
    common = dict(height=64, width=64, num_inference_steps=2, max_sequence_length=32, output_type="latent")
    ours = regional("a cat", [("a cat", [0.1, 0.1, 0.6, 0.6])], mask_inject_steps=0,
                    generator=torch.Generator().manual_seed(3), **common).images
    plain = FluxPipeline(**regional.components)("a cat", generator=torch.Generator().manual_seed(3), **common).images
    assert torch.equal(ours, plain)


def test_a_batch_grounds_each_prompt_on_its_own_layout(flux_dir, sd3_dir):
    from mllm_guidance.backends.layout_pipelines.regional_flux_pipeline import RegionalFluxPipeline

    regional = RegionalFluxPipeline.from_pretrained(str(flux_dir))
    creati = load_creatilayout(str(sd3_dir))
    one = [("a cat", [0.0, 0.0, 0.5, 0.5])]
    two = [("a dog", [0.5, 0.0, 1.0, 1.0]), ("a ball", [0.0, 0.6, 0.4, 1.0])]

    def run(pipe, extra, prompts, regions, seeds):
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        return pipe(prompts, regions, height=64, width=64, num_inference_steps=2, generator=generators,
                    output_type="latent", **extra).images

    for pipe, extra in ((regional, {"mask_inject_steps": 2, "max_sequence_length": 32}), (creati, {"grounding_share": 1.0})):
        batch = run(pipe, extra, ["a cat", "a dog and a ball"], [one, two], [0, 1])
        alone = torch.cat([run(pipe, extra, ["a cat"], [one], [0]), run(pipe, extra, ["a dog and a ball"], [two], [1])])
        assert torch.allclose(batch, alone, atol=1e-4), type(pipe).__name__


def test_token_masks_and_the_regional_attention_mask():
    from mllm_guidance.backends.layout_pipelines.regional_flux_pipeline import regional_attention_mask, region_token_masks

    masks = region_token_masks([[0.0, 0.0, 0.5, 1.0], [0.9, 0.9, 0.92, 0.92]], height=64, width=64, cell=16)
    assert masks[0].view(4, 4)[:, :2].all() and not masks[0].view(4, 4)[:, 2:].any()
    assert masks[1].nonzero().flatten().tolist() == [15]  # too small for any token centre: keeps the one under it
    mask = regional_attention_mask(masks, text_len=2)  # [phrase 0 (2), phrase 1 (2), 16 image tokens]
    image = slice(4, 20)
    assert mask[0:2, 0:2].all() and not mask[0:2, 2:4].any()  # phrases see themselves only
    assert torch.equal(mask[0, image], masks[0]) and torch.equal(mask[image, 0], masks[0])
    assert mask[4, 4 + 4] and not mask[4, 4 + 2]  # same region; left half never sees the right half...
    assert mask[4 + 2, 4 + 3]  # ...while tokens in no box see each other


def test_weights_licenses_by_model_id():
    assert flux_license("black-forest-labs/FLUX.1-schnell") == "FLUX.1 [schnell]: Apache-2.0"
    assert flux_license("black-forest-labs/FLUX.1-dev") == "FLUX.1 [dev] Non-Commercial License"
    assert creatilayout_license("stabilityai/stable-diffusion-3-medium-diffusers", "sd3").startswith("Stability AI Community License")
    assert creatilayout_license("black-forest-labs/FLUX.1-dev", "flux").startswith("FLUX.1 [dev] Non-Commercial License")
    assert flux_license("/some/folder").startswith("unknown")


def test_registry_specs_load_once_and_wrong_folders_fail_clearly(flux_dir, tmp_path):
    gen = create_generator(f"regional-flux:{flux_dir}", **FAST)
    assert create_generator(f"regional-flux:{flux_dir}", **FAST) is gen and gen.name == "regional-flux"
    assert gen.weights_license.startswith("unknown") and gen.default_size == (1024, 1024)
    with pytest.raises(BackendError, match="cannot load the creatilayout model .*GLIGEN.*SD3 or a FLUX.1-dev"):
        CreatiLayoutGenerator(str(build_tiny_gligen(tmp_path / "gligen")))
    with pytest.raises(BackendError, match="cannot load the creatilayout model"):
        CreatiLayoutGenerator(str(flux_dir), layout_weights=str(tmp_path / "no-weights"))


def test_the_whole_graph_on_regional_flux(flux_dir, tmp_path):
    from tests.fakes import ALIGNED, PLACE, RecordingChatModel, score

    model = RecordingChatModel(replies={"place": [PLACE], "self_correct": [PLACE], "reason": [score(3), score(5)], "align": [ALIGNED]})
    result = guide("A man is sitting under a tree while a bird is in the tree.", mllm=model, generator="regional-flux",
                   generator_options={"model": str(flux_dir), **FAST}, config={"width": 64, "height": 64, "seed": 3},
                   run_dir=tmp_path / "run")
    assert result.usage.generator_calls == 2 and result.best_round == 1
    assert result.load_image().size == (64, 64)


def test_cli_with_saved_tiny_dit_pipelines(flux_dir, sd3_dir, tmp_path, capsys):
    from tests.cli.test_cli import PROMPT, RECORDING

    for name, path, steps in (("regional-flux", flux_dir, "2"), ("creatilayout", sd3_dir, "4")):  # 4: one grounded step
        code = main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--generator", name, "--model-path", str(path),
                     "--size", "64", "--steps", steps, "--out", str(tmp_path / name)])
        assert code == 0, capsys.readouterr().err
        assert "best: round 2, score 5/5" in capsys.readouterr().out
        assert (tmp_path / name / "round-2.png").exists() and '<svg class="boxes"' in (tmp_path / name / "report.html").read_text()
