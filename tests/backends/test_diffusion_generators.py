"""gligen, gligen-xl and text2image on tiny random-weight pipelines, through the real diffusers code."""

import numpy as np
import pytest

pytest.importorskip("diffusers")

from mllm_guidance import guide  # noqa: E402
from mllm_guidance.backends.generator import GenerationRequest  # noqa: E402
from mllm_guidance.backends.registry import create_generator  # noqa: E402
from mllm_guidance.backends.gligen import GligenGenerator  # noqa: E402
from mllm_guidance.backends.gligen_xl import GligenXLGenerator, load_gligen_xl  # noqa: E402
from mllm_guidance.backends.text2image import Text2ImageGenerator  # noqa: E402
from mllm_guidance.cli import main  # noqa: E402
from mllm_guidance.errors import BackendError  # noqa: E402
from mllm_guidance.layout import Layout  # noqa: E402
from tests.backends.tiny_diffusion import build_tiny_gligen, build_tiny_gligen_xl  # noqa: E402

LAYOUT = Layout.from_pairs([("a cat", [0.1, 0.1, 0.5, 0.5]), ("a dog", [0.5, 0.5, 0.9, 0.9])])


@pytest.fixture(scope="module")
def gligen_dir(tmp_path_factory):
    return build_tiny_gligen(tmp_path_factory.mktemp("tiny-gligen"))


@pytest.fixture(scope="module")
def gligen_xl_dir(tmp_path_factory):
    return build_tiny_gligen_xl(tmp_path_factory.mktemp("tiny-gligen-xl"))


@pytest.fixture(scope="module", params=["gligen", "gligen-xl"])
def backend(request, gligen_dir, gligen_xl_dir):
    cls, path = {"gligen": (GligenGenerator, gligen_dir), "gligen-xl": (GligenXLGenerator, gligen_xl_dir)}[request.param]
    return cls(str(path), steps=3)


def req(layout=LAYOUT, seed=0, w=64, h=64, **kw):
    return GenerationRequest(prompt="a cat and a dog", layout=layout, seed=seed, width=w, height=h, **kw)


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def test_renders_with_boxes_and_is_seeded(backend):
    a, b, c = backend.generate(req()), backend.generate(req()), backend.generate(req(seed=1))
    assert a.image.size == (64, 64) and a.notes == []
    assert (pixels(a.image) == pixels(b.image)).all() and not (pixels(a.image) == pixels(c.image)).all()


def test_the_boxes_change_the_image(backend, monkeypatch):
    monkeypatch.setattr(backend, "beta", 1.0)  # a constructor option (generator_options={"beta": 1.0})
    grounded = backend.generate(req())
    swapped = Layout.from_pairs([("a cat", [0.5, 0.5, 0.9, 0.9]), ("a dog", [0.05, 0.05, 0.4, 0.4])])
    moved = backend.generate(req(layout=swapped))
    assert np.abs(pixels(grounded.image) - pixels(moved.image)).sum() > 0  # random weights: small, but real


def test_empty_layout_renders_without_grounding(backend):
    out = backend.generate(req(layout=Layout()))
    assert out.image.size == (64, 64) and out.notes == ["empty layout: rendered without grounding"]


def test_31_objects_keep_the_30_largest(backend):
    objects = [(f"thing {i}", [0.01 * i, 0.01 * i, 0.01 * i + 0.05 + 0.001 * i, 0.01 * i + 0.05 + 0.001 * i]) for i in range(31)]
    out = backend.generate(req(layout=Layout.from_pairs(objects)))
    assert any("31 objects: kept the 30 largest, dropped thing 0" in n for n in out.notes)


def test_a_200_word_phrase_is_cut(backend):
    long = " ".join(["blue"] * 200)
    out = backend.generate(req(layout=Layout.from_pairs([(long, [0.1, 0.1, 0.9, 0.9])])))
    assert any("cut to the text encoder's 77 tokens" in n for n in out.notes)


def test_odd_sizes_are_rounded_to_multiples_of_8(backend):
    out = backend.generate(req(w=70, h=66))
    assert out.image.size == (64, 64) and "size 70x66 rounded to 64x64" in out.notes[0]


@pytest.mark.parametrize("name", ["gligen", "gligen-xl"])
def test_beta_zero_is_the_ungrounded_render(name, gligen_dir, gligen_xl_dir):
    cls, path = {"gligen": (GligenGenerator, gligen_dir), "gligen-xl": (GligenXLGenerator, gligen_xl_dir)}[name]
    gen = cls(str(path), steps=3, beta=0.0)
    off = gen.generate(req())
    plain = gen.generate(req(layout=Layout()))
    gen.beta = 1.0
    on = gen.generate(req())
    assert (pixels(off.image) == pixels(plain.image)).all()
    assert not (pixels(on.image) == pixels(plain.image)).all()
    assert all(m.enabled for m in gen.pipe.unet.modules() if type(m).__name__ == "GatedSelfAttentionDense")


def test_gligen_xl_save_and_load_round_trip(gligen_xl_dir, tmp_path):
    pipe = load_gligen_xl(str(gligen_xl_dir))
    assert pipe.unet.config.cross_attention_dim == 64 and pipe.unet.position_net is not None
    pipe.save_pretrained(tmp_path / "copy")
    first = GligenXLGenerator(str(gligen_xl_dir), steps=2).generate(req())
    second = GligenXLGenerator(str(tmp_path / "copy"), steps=2).generate(req())
    assert (pixels(first.image) == pixels(second.image)).all()


def test_a_non_gligen_unet_is_refused(tmp_path):
    plain = build_tiny_gligen(tmp_path / "sd", gated=False)
    with pytest.raises(BackendError, match="cannot load the gligen-xl model"):
        GligenXLGenerator(str(plain))
    with pytest.raises(BackendError, match="cannot load the gligen model .*not a GLIGEN UNet"):
        GligenGenerator(str(plain))


def test_missing_weights_say_what_to_do(tmp_path):
    with pytest.raises(BackendError, match="cannot load the gligen model .*local directory"):
        GligenGenerator(str(tmp_path / "nothing-here"))


def test_text2image_ignores_the_layout_and_says_so(tmp_path):
    path = build_tiny_gligen(tmp_path / "sd", gated=False)
    gen = Text2ImageGenerator(str(path))
    assert gen.default_size == (64, 64)
    out = gen.generate(req(steps=2))
    assert out.image.size == (64, 64) and out.notes == ["text2image ignores the layout"]
    with pytest.raises(BackendError, match="needs a model"):
        Text2ImageGenerator()


def test_registry_specs_load_once(gligen_dir):
    a = create_generator(f"gligen:{gligen_dir}", steps=2)
    assert create_generator(f"gligen:{gligen_dir}", steps=2) is a and a.name == "gligen"


def test_the_whole_graph_on_gligen(gligen_dir, tmp_path):
    from tests.fakes import ALIGNED, PLACE, RecordingChatModel, score

    model = RecordingChatModel(replies={"place": [PLACE], "self_correct": [PLACE], "reason": [score(3), score(5)], "align": [ALIGNED]})
    result = guide("A man is sitting under a tree while a bird is in the tree.", mllm=model, generator="gligen",
                   generator_options={"model": str(gligen_dir), "steps": 2}, config={"width": 64, "height": 64, "seed": 3},
                   run_dir=tmp_path / "run")
    assert result.usage.generator_calls == 2 and result.best_round == 1
    assert result.load_image().size == (64, 64)


def test_cli_with_a_saved_tiny_pipeline(gligen_dir, gligen_xl_dir, tmp_path, capsys):
    from tests.cli.test_cli import PROMPT, RECORDING

    for name, path in (("gligen", gligen_dir), ("gligen-xl", gligen_xl_dir)):
        code = main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--generator", name, "--model-path", str(path),
                     "--size", "64", "--steps", "2", "--out", str(tmp_path / name)])
        assert code == 0, capsys.readouterr().err
        assert "best: round 2, score 5/5" in capsys.readouterr().out
        assert (tmp_path / name / "round-2.png").exists() and '<svg class="boxes"' in (tmp_path / name / "report.html").read_text()


def test_four_concurrent_runs_share_one_pipeline_and_match_lone_runs(gligen_dir, tmp_path):
    """Issue 15, item 1: four aguide calls at once on one cached tiny GLIGEN pipeline (the
    scheduler's state once made all four fail): all succeed, each image equal to a lone run's."""
    import asyncio

    from mllm_guidance import aguide
    from tests.fakes import PLACE, RecordingChatModel, score

    def model():
        return RecordingChatModel(replies={"place": [PLACE], "reason": [score(5)]})

    options = {"model": str(gligen_dir), "steps": 3}
    config = {"width": 64, "height": 64, "self_correct": False}

    async def together():
        return await asyncio.gather(*(aguide("A man under a tree.", mllm=model(), generator="gligen",
                                             generator_options=options, config={**config, "seed": s},
                                             run_dir=tmp_path / f"c{s}") for s in range(4)))

    results = asyncio.run(together())
    for s, result in enumerate(results):
        lone = guide("A man under a tree.", mllm=model(), generator="gligen", generator_options=options,
                     config={**config, "seed": s}, run_dir=tmp_path / f"lone{s}")
        assert result.image_path.read_bytes() == lone.image_path.read_bytes()
    assert len({r.image.sha256 for r in results}) == 4  # four seeds, four images
