"""generate_batch on tiny random-weight pipelines: every image of a batch is its lone render, to float
rounding, whatever the batch mixes (prompts, layouts, seeds; sizes and empty layouts go in groups)."""

import numpy as np
import pytest

pytest.importorskip("diffusers")

from mllm_guidance.backends.creatilayout import CreatiLayoutGenerator  # noqa: E402
from mllm_guidance.backends.generator import GenerationRequest, can_batch, render_batch  # noqa: E402
from mllm_guidance.backends.gligen import GligenGenerator  # noqa: E402
from mllm_guidance.backends.gligen_xl import GligenXLGenerator  # noqa: E402
from mllm_guidance.backends.regional_flux import RegionalFluxGenerator  # noqa: E402
from mllm_guidance.backends.sketch import SketchGenerator  # noqa: E402
from mllm_guidance.backends.text2image import Text2ImageGenerator  # noqa: E402
from mllm_guidance.layout import Layout  # noqa: E402
from tests.backends.tiny_diffusion import build_tiny_gligen, build_tiny_gligen_xl  # noqa: E402
from tests.backends.tiny_dit import build_tiny_creatilayout_flux, build_tiny_creatilayout_sd3, build_tiny_flux  # noqa: E402

CAT_DOG = Layout.from_pairs([("a cat", [0.05, 0.1, 0.5, 0.6]), ("a dog", [0.5, 0.4, 0.95, 0.95])])
BALL = Layout.from_pairs([("a red ball", [0.3, 0.2, 0.9, 0.6])])
DIT = {"max_sequence_length": 32}


def build(name, root):
    if name == "gligen":
        return GligenGenerator(str(build_tiny_gligen(root)), steps=4, beta=0.5)  # 2 grounded steps of 4
    if name == "gligen-xl":
        return GligenXLGenerator(str(build_tiny_gligen_xl(root)), steps=4, beta=0.5)
    if name == "text2image":
        return Text2ImageGenerator(str(build_tiny_gligen(root, gated=False)))
    if name == "regional-flux":
        return RegionalFluxGenerator(str(build_tiny_flux(root)), steps=2, mask_share=0.5, **DIT)
    if name == "eligen-qwen":
        from mllm_guidance.backends.eligen_qwen import EliGenQwenGenerator
        from tests.backends.tiny_qwen_image import build_tiny_qwen_image

        return EliGenQwenGenerator(str(build_tiny_qwen_image(root)), steps=2)
    if name == "creatilayout-sd3":
        return CreatiLayoutGenerator(str(build_tiny_creatilayout_sd3(root)), steps=2, grounding_share=0.5, **DIT)
    return CreatiLayoutGenerator(str(build_tiny_creatilayout_flux(root)), steps=2, grounding_share=0.5, **DIT)


@pytest.fixture(scope="module", params=["gligen", "gligen-xl", "text2image", "regional-flux", "creatilayout-sd3",
                                        "creatilayout-flux", "eligen-qwen"])
def generator(request, tmp_path_factory):
    return build(request.param, tmp_path_factory.mktemp(request.param))


def req(prompt, layout, seed, size=64, **kw):
    return GenerationRequest(prompt=prompt, layout=layout, seed=seed, width=size, height=size, **kw)


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def test_a_batch_renders_each_request_as_it_renders_alone(generator):
    requests = [req("a cat and a dog", CAT_DOG, 0), req("a red ball", BALL, 5), req("a dog near a cat", CAT_DOG, 7)]
    batch = generator.generate_batch(requests)
    assert can_batch(generator) and len(batch) == 3
    for request, got in zip(requests, batch, strict=True):
        alone = generator.generate(request)
        assert got.notes == alone.notes
        diff = np.abs(pixels(got.image) - pixels(alone.image))
        assert diff.max() <= 1 and diff.mean() < 0.01, (request.seed, diff.max(), diff.mean())  # float rounding only
    assert np.abs(pixels(batch[0].image) - pixels(batch[1].image)).max() > 10  # and they are not one image


def test_a_mixed_batch_is_rendered_in_groups_in_order(generator):
    requests = [req("a cat and a dog", CAT_DOG, 1), req("a cat", Layout(), 2), req("a red ball", BALL, 3, size=96),
                req("a cat", Layout(), 4), req("a red ball", BALL, 5)]
    batch = render_batch(generator, requests)
    assert [g.image.size for g in batch] == [(64, 64), (64, 64), (96, 96), (64, 64), (64, 64)]
    for request, got in zip(requests, batch, strict=True):
        alone = generator.generate(request)
        assert got.notes == alone.notes and np.abs(pixels(got.image) - pixels(alone.image)).max() <= 1


def test_generators_without_generate_batch_render_batches_of_one():
    assert not can_batch(SketchGenerator())
