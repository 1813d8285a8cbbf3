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


@pytest.mark.parametrize("size", [(1, 1), (3, 5), (64, 1), (1, 64), (97, 131)])
def test_the_stores_png_is_a_valid_png_with_the_exact_pixels(size):
    import io
    import struct
    import zlib

    from mllm_guidance.images import png_file

    image = Image.effect_noise(size, 60).convert("RGB")
    image = Image.merge("RGB", (image.getchannel(0), image.getchannel(0).transpose(Image.Transpose.ROTATE_180)
                                if size[0] == size[1] else image.getchannel(0), Image.new("L", size, 200)))
    data = png_file(image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, kinds = 8, []
    while at < len(data):  # every chunk's CRC checked, IHDR as written
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind, body = data[at + 4:at + 8], data[at + 8:at + 8 + length]
        assert struct.unpack(">I", data[at + 8 + length:at + 12 + length])[0] == zlib.crc32(kind + body)
        kinds.append(kind)
        at += 12 + length
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "PNG" and decoded.mode == "RGB" and decoded.size == size
    assert decoded.tobytes() == image.tobytes()
