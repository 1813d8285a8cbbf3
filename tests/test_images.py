"""What the generate node learns about a generated image before it is stored (issue 10, item 9)."""

import pytest
from PIL import Image

from mllm_guidance.draw import draw_caption, draw_layout
from mllm_guidance.errors import BackendError
from mllm_guidance.images import check_image, to_rgb
from mllm_guidance.layout import Layout

LAYOUT = Layout.from_pairs([("a cat 漢字 😀", [0.1, 0.1, 0.6, 0.6]), ("a dog", [0.5, 0.5, 0.9, 0.9])])


def test_a_wrong_size_is_noted():
    assert check_image(Image.new("RGB", (64, 64)), (64, 64)) == []
    [note] = check_image(Image.new("RGB", (512, 512)), (1024, 768))
    assert "512x512 image, not the 1024x768 asked for" in note


def test_a_converted_mode_is_noted():
    [note] = check_image(Image.new("RGBA", (8, 8)), (8, 8))
    assert "mode RGBA" in note and "white" in note
    [note] = check_image(Image.new("F", (8, 8), 0.25), None)
    assert "0..1 scaled" in note


@pytest.mark.parametrize("bad,message", [(Image.new("RGB", (0, 0)), "empty 0x0"), (None, "not a PIL image")])
def test_unusable_images_are_backend_errors(bad, message):
    with pytest.raises(BackendError, match=message):
        check_image(bad, (8, 8))
    with pytest.raises(BackendError, match=message):
        to_rgb(bad)


def test_rgb_images_pass_untouched():
    image = Image.new("RGB", (8, 8))
    assert to_rgb(image) is image


@pytest.mark.parametrize("mode", ["1", "L", "I", "F", "LA", "La", "CMYK", "P", "I;16"])
def test_overlays_and_captions_draw_on_any_mode(mode):
    image = Image.new(mode, (64, 48))
    assert draw_layout(image, LAYOUT).mode == "RGB"
    assert draw_caption(image, "a cat 漢字").size == (64, 48)
