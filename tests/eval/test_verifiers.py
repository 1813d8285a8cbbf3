"""Verifiers on a tiny random CLIP, and candidate search end to end on a tiny GLIGEN pipeline."""

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")

from mllm_guidance.backends.verifier import resolve_verifier  # noqa: E402
from mllm_guidance.errors import ConfigError  # noqa: E402
from mllm_guidance.layout import Layout  # noqa: E402

LAYOUT = Layout.from_pairs([("a red cat", [0.0, 0.0, 0.5, 1.0]), ("a blue sky", [0.5, 0.0, 1.0, 1.0])])


def images():
    half = Image.new("RGB", (64, 64), (30, 30, 200))
    half.paste(Image.new("RGB", (32, 64), (200, 30, 30)), (0, 0))
    return [half, half.transpose(Image.Transpose.FLIP_LEFT_RIGHT), Image.new("RGB", (64, 64), (240, 240, 240))]


def test_clip_and_layout_clip_rank_every_image(tiny_clip):
    clip, layout_clip = resolve_verifier("clip", tiny_clip), resolve_verifier("layout-clip", tiny_clip)
    assert resolve_verifier("clip", tiny_clip) is clip  # loaded once per process
    whole, per_box = clip.rank("a red cat and a blue sky", LAYOUT, images()), layout_clip.rank("a red cat and a blue sky", LAYOUT, images())
    assert len(whole) == len(per_box) == 3 and all(isinstance(v, float) for v in whole + per_box)
    assert per_box[0] != per_box[1]  # the crops follow the boxes: a mirrored image scores otherwise
    assert layout_clip.rank("a red cat", None, images()) == pytest.approx(clip.rank("a red cat", None, images()))


def test_an_unknown_verifier_is_refused():
    with pytest.raises(ConfigError, match="unknown verifier 'nope'; choose one of clip"):
        resolve_verifier("nope")


def test_generate_with_four_candidates_and_the_clip_verifier(tiny_clip, tmp_path, capsys):
    """``--candidates 4 --verifier clip`` on a tiny GLIGEN: four renders a round (seeds s..s+3, one
    batch, each equal to its lone render), the verifier's best is the round's image the judge saw,
    all four recorded with their scores."""
    from mllm_guidance.backends.generator import GenerationRequest
    from mllm_guidance.backends.gligen import GligenGenerator
    from mllm_guidance.cli import main
    from mllm_guidance.state import ImageRef
    from mllm_guidance.store import RunStore
    from tests.backends.tiny_diffusion import build_tiny_gligen
    from tests.cli.test_cli import PROMPT, RECORDING

    model = build_tiny_gligen(tmp_path / "gligen")
    code = main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--generator", "gligen", "--model-path", str(model),
                 "--size", "64", "--steps", "2", "--seed", "7", "--candidates", "4", "--verifier", "clip",
                 "--verifier-model", tiny_clip, "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    rounds = record["rounds"]
    assert record["usage"]["generator_calls"] == 4 * len(rounds)
    store, lone = RunStore(tmp_path / "run"), GligenGenerator(str(model), steps=2)
    for r in rounds:
        cands = r["candidates"]
        assert [c["seed"] for c in cands] == [7, 8, 9, 10] and sum(c["chosen"] for c in cands) == 1
        best = max(cands, key=lambda c: (c["score"], -c["seed"]))
        assert best["chosen"] and r["image"]["sha256"] == best["image"]["sha256"] and r["seed"] == best["seed"]
        assert r["verifier"] == "clip" and r["score"] is not None  # the judge scored the chosen one
    layout = Layout.model_validate(rounds[0]["layout"])
    for c in rounds[0]["candidates"]:  # the batch of 4 equals 4 lone renders
        alone = lone.generate(GenerationRequest(prompt=PROMPT, layout=layout, seed=c["seed"], width=64, height=64)).image
        saved = store.load_image(ImageRef.model_validate(c["image"]))
        assert np.abs(np.asarray(saved, dtype=np.int16) - np.asarray(alone, dtype=np.int16)).max() <= 2
