import pytest

from mllm_guidance.backends.generator import GenerationRequest, Generated
from mllm_guidance.backends.registry import available_generators, create_generator
from mllm_guidance.errors import BackendError
from mllm_guidance.layout import Layout


def test_sketch_is_cached_and_draws_the_layout():
    g = create_generator("sketch")
    assert create_generator("sketch") is g and "sketch" in available_generators()
    layout = Layout.from_pairs([("a cat", [0.0, 0.0, 0.5, 0.5])])
    out = g.generate(GenerationRequest(prompt="a cat", layout=layout, seed=1, width=64, height=32))
    assert isinstance(out, Generated) and out.image.size == (64, 32)
    assert out.image.getpixel((2, 2)) != out.image.getpixel((60, 30))  # the box is drawn
    blank = g.generate(GenerationRequest(prompt="a cat", layout=None, seed=1, width=64, height=64))
    assert blank.notes == ["no layout: drew the prompt"]


def test_objects_pass_through_and_bad_specs_fail_clearly():
    g = create_generator("sketch")
    assert create_generator(g) is g
    with pytest.raises(BackendError, match="unknown generator 'gligen-9'; available: .*sketch"):
        create_generator("gligen-9")
    with pytest.raises(BackendError, match="does not accept"):
        create_generator("sketch", weird=1)
    with pytest.raises(BackendError, match="neither"):
        create_generator(42)  # type: ignore[arg-type]
