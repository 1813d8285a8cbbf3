"""CLIPScore and the scoring of a run's records, with a tiny random-weight CLIP (no download)."""

import math

import pytest

pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from mllm_guidance.eval.clipscore import HESSEL_PREFIX, ClipScorer  # noqa: E402
from mllm_guidance.eval.models import embed_images, embed_texts  # noqa: E402
from mllm_guidance.eval.scorers import build_scorers, score_records  # noqa: E402
from tests.eval.conftest import color_items  # noqa: E402


def test_clipscore_two_references_from_one_clip_and_batching_is_exact(tiny_clip):
    one = ClipScorer(tiny_clip, batch_size=1)
    many = ClipScorer(tiny_clip, batch_size=4).score(color_items())
    for a, b in zip(one.score(color_items()), many, strict=True):
        assert math.isfinite(a["clipscore_cos"]) and -1 <= a["clipscore_cos"] <= 1 and 0 <= a["clipscore"] <= 2.5
        assert a == pytest.approx(b, abs=1e-5)
    # T2I-CompBench: the raw cosine with the prompt; Hessel et al.: 2.5 * max(cos, 0) with "A photo depicts "
    for item, got in zip(color_items(), one.score(color_items()), strict=True):
        image = embed_images(one.clip, one.processor, [item.image], one.device)[0]
        plain, hessel = embed_texts(one.clip, one.processor, [item.prompt, HESSEL_PREFIX + item.prompt], one.device)
        cos, cos_hessel = float((image * plain).sum()), float((image * hessel).sum())
        assert got["clipscore_cos"] == pytest.approx(cos, abs=1e-6)
        assert got["clipscore"] == pytest.approx(2.5 * max(cos_hessel, 0.0), abs=1e-6)
    assert one.settings["model"] == tiny_clip and one.settings["complex_rule"] is False


def test_clipscore_embeds_the_prompt_and_hessels_caption(tiny_clip, monkeypatch):
    import mllm_guidance.eval.clipscore as module

    seen = []
    real = module.embed_texts
    monkeypatch.setattr(module, "embed_texts", lambda clip, proc, texts, device: seen.append(list(texts)) or real(clip, proc, texts, device))
    ClipScorer(tiny_clip).score(color_items()[:2])
    assert seen == [["a red cat", "a green field"], ["A photo depicts a red cat", "A photo depicts a green field"]]


def test_clipscore_complex_rule_needs_spacys_model(tiny_clip, monkeypatch):
    from mllm_guidance.eval import phrases

    monkeypatch.setattr(phrases, "spacy_pipeline", lambda: None)
    with pytest.raises(Exception, match="python -m spacy download en_core_web_sm"):
        ClipScorer(tiny_clip, complex_rule=True)


def test_score_records_is_idempotent_and_rescores_other_settings(tiny_clip, tmp_path):
    image = tmp_path / "images" / "a.png"
    image.parent.mkdir()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(image)
    records = [{"key": "a", "status": "ok", "prompt": "a red cat", "image": "images/a.png", "metrics": {}},
               {"key": "b", "status": "failed"}]
    scorers = build_scorers(["clipscore"], clip_model=tiny_clip)
    score_records(tmp_path, records, scorers)
    first = dict(records[0]["metrics"])
    assert set(first) == {"clipscore", "clipscore_cos"} and "metrics" not in records[1]
    assert records[0]["scoring"]["clipscore"]["settings"] == scorers[0].settings

    class Counting(ClipScorer):
        calls = 0

        def score(self, items):
            Counting.calls += 1
            return super().score(items)

    again = Counting(tiny_clip)
    score_records(tmp_path, records, [again])
    assert Counting.calls == 0 and records[0]["metrics"] == first  # same settings: nothing redone
    again.model_id = "another-clip"  # other settings (here only the name): scored again, and recorded
    score_records(tmp_path, records, [again])
    assert Counting.calls == 1 and records[0]["scoring"]["clipscore"]["settings"]["model"] == "another-clip"


def test_build_scorers_refuses_unknown_names_and_options_before_loading():
    with pytest.raises(Exception, match="unknown scorer 'fid'"):
        build_scorers(["clipscore", "fid"], clip_model="/nonexistent")
    with pytest.raises(Exception, match="unknown scorer option"):
        build_scorers(["clipscore"], clip_modle="x")


def test_eval_scorer_modules_do_not_import_each_other():
    """One loader module (eval.models); blip, clipscore and judge never import scorers at run time."""
    import ast
    from pathlib import Path

    import mllm_guidance.eval as package

    root = Path(package.__file__).parent
    for module in ("blip", "clipscore", "judge", "models", "phrases"):
        tree = ast.parse((root / f"{module}.py").read_text())
        runtime_imports = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                           and not _under_type_checking(tree, n)}
        assert "mllm_guidance.eval.scorers" not in runtime_imports, module


def _under_type_checking(tree, node) -> bool:
    import ast

    for block in ast.walk(tree):
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING" and node in ast.walk(block):
            return True
    return False



def test_any_scorer_ranks_one_candidate_as_a_verifier(tiny_clip):
    from mllm_guidance.eval.scorers import PRIMARY, SCORERS, verifier_score

    assert set(PRIMARY) == set(SCORERS)  # every scorer names the number candidate search ranks by
    scorer = build_scorers(["clipscore"], clip_model=tiny_clip)[0]
    item = color_items()[0]
    assert verifier_score(scorer, item.prompt, item.image) == scorer.score([item])[0]["clipscore"]
