import json

import pytest
from PIL import Image

from mllm_guidance.errors import BackendError, InputError
from mllm_guidance.redact import redact, redact_text
from mllm_guidance.store import RunStore


def test_images_are_saved_by_reference(tmp_path):
    store = RunStore(tmp_path)
    ref = store.save_image(Image.new("RGB", (32, 16), (10, 20, 30)), "round-0.png")
    assert ref.path == "round-0.png" and (ref.width, ref.height) == (32, 16) and ref.bytes > 0 and len(ref.sha256) == 64
    again = store.load_image(ref)
    assert again.size == (32, 16) and again.getpixel((0, 0)) == (10, 20, 30)


def test_changed_or_missing_images_are_refused(tmp_path):
    store = RunStore(tmp_path)
    ref = store.save_image(Image.new("RGB", (8, 8)), "a.png")
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "a.png")
    with pytest.raises(InputError, match="changed"):
        store.load_image(ref)
    (tmp_path / "a.png").unlink()
    with pytest.raises(InputError, match="missing"):
        store.load_image(ref)


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path):
    store = RunStore(tmp_path)
    store.write_json("x.json", {"a": 1})
    store.write_json("x.json", {"a": 2})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_call_log_survives_a_torn_line(tmp_path):
    store = RunStore(tmp_path)
    first = store.record_call({"step": "place", "reply": "ok"})
    with open(tmp_path / "calls.jsonl", "a") as f:
        f.write('{"step": "reason", "rep')  # a crash mid-write
    assert [c["id"] for c in store.calls()] == [first]


def test_planted_keys_never_reach_disk(tmp_path, monkeypatch):
    key = "sk-test-PLANTED0123456789abcdefXYZ"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-plantedvalue-42")
    store = RunStore(tmp_path)
    store.record_call({"step": "place", "reply": f"error: bad key {key}", "request": [{"content": "tok-plantedvalue-42"}]})
    store.write_json("run.json", {"note": f"Authorization: Bearer {key}", key: "as a key too"})
    for path in tmp_path.iterdir():
        text = path.read_text()
        assert key not in text and "tok-plantedvalue-42" not in text
    assert "***" in (tmp_path / "run.json").read_text()


def test_key_shapes_are_masked_without_the_environment():
    assert redact_text("key AIza" + "x" * 35 + " end", secrets=[]) == "key *** end"
    assert redact({"a": ["sk-" + "a" * 30]}, secrets=[]) == {"a": ["***"]}


def test_images_for_the_model_and_copies(tmp_path):
    store = RunStore(tmp_path)
    small = store.save_image(Image.new("RGB", (64, 32)), "s.png")
    as_png = store.image_for_model(small, 64, "png")
    assert as_png.data == (tmp_path / "s.png").read_bytes() and as_png.mime_type == "image/png"  # sent as stored
    big = store.save_image(Image.new("RGB", (200, 100)), "b.png")
    import io
    for fmt, mime, kind in (("jpeg", "image/jpeg", "JPEG"), ("png", "image/png", "PNG")):
        sent = store.image_for_model(big, 50, fmt)
        image = Image.open(io.BytesIO(sent.data))
        assert sent.mime_type == mime and image.format == kind and image.size == (50, 25)
    assert Image.open(io.BytesIO(store.image_for_model(small, 64).data)).format == "JPEG"  # the default
    final = store.link_image(big, "final.png")
    assert final.path == "final.png" and final.sha256 == big.sha256 and store.load_image(final).size == (200, 100)


# -- hostile text and images (issue 10, items 4 and 9) ----------------------------------------


def test_lone_surrogates_survive_the_call_log_and_json_files(tmp_path):
    """A reply holding a lone UTF-16 surrogate stopped the run (UnicodeEncodeError) when the
    call log was written, and again on resume. It is written as its escape and reads back."""
    store = RunStore(tmp_path)
    reply = "Objects:\n- a \ud800 cat [0.1, 0.1, 0.5, 0.5] \udfff"
    store.record_call({"step": "place", "reply": reply, "error": None})
    store.write_json("run.json", {"reply": reply, "\udc80key": 1})
    store.write_text("report.html", f"<p>{reply}</p>")
    assert store.calls()[0]["reply"] == reply
    assert store.read_json("run.json") == {"reply": reply, "\udc80key": 1}
    assert "\\ud800" in (tmp_path / "report.html").read_text(encoding="utf-8")
    (tmp_path / "calls.jsonl").read_text(encoding="utf-8")  # valid UTF-8 on disk


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "F", "LA", "PA", "La", "RGBa", "I;16", "RGBX"])
def test_images_of_any_mode_are_saved_as_rgb(tmp_path, mode):
    store = RunStore(tmp_path)
    ref = store.save_image(Image.new(mode, (12, 10)), "round-0.png")
    image = store.load_image(ref)
    assert image.mode == "RGB" and image.size == (12, 10) == (ref.width, ref.height)


def test_transparency_lands_on_white_and_float_images_keep_their_tones(tmp_path):
    store = RunStore(tmp_path)
    clear = store.load_image(store.save_image(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "a.png"))
    assert clear.getpixel((0, 0)) == (255, 255, 255)
    grey = store.load_image(store.save_image(Image.new("F", (4, 4), 0.5), "f.png"))
    assert grey.getpixel((0, 0)) == (127, 127, 127)  # a 0..1 float image, not clipped to black
    deep = store.load_image(store.save_image(Image.new("I;16", (4, 4), 65535), "i.png"))
    assert deep.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("size", [(0, 0), (16, 0), (0, 16)])
def test_an_empty_image_is_a_clear_backend_error(tmp_path, size):
    with pytest.raises(BackendError, match=f"empty {size[0]}x{size[1]} image"):
        RunStore(tmp_path).save_image(Image.new("RGB", size), "round-0.png")
    assert not (tmp_path / "round-0.png").exists()


def test_a_non_image_is_a_clear_backend_error(tmp_path):
    with pytest.raises(BackendError, match="not a PIL image"):
        RunStore(tmp_path).save_image([[0, 0, 0]], "round-0.png")
