"""Region repair and candidate search in the generate node and the whole loop (sketch generators,
stub verifier); the diffusion backends' masked paths are tested in tests/backends/test_repair_backends.py."""

import numpy as np
import pytest

from mllm_guidance import guide, resume
from mllm_guidance.config import make_config
from mllm_guidance.errors import BackendError, ConfigError
from mllm_guidance.repair import pixel_mask
from mllm_guidance.store import RunStore
from tests.conftest import PROMPT
from tests.fakes import ALIGNED, CORRECTED, PLACE, CountingGenerator, LengthVerifier, RecordingChatModel, RepairingGenerator, score

REPLIES = {"place": [PLACE], "self_correct": [CORRECTED, CORRECTED], "reason": [score(3), score(5)], "align": [ALIGNED]}


def px(image):
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def run(tmp_path, generator, replies=REPLIES, settings=None, **cfg):
    model = RecordingChatModel(replies={k: list(v) for k, v in replies.items()})
    result = guide(PROMPT, mllm=model, generator=generator, config={"width": 96, "height": 64, **cfg},
                   run_dir=tmp_path / "run", settings=settings)
    return result, model


def test_the_second_round_repairs_only_the_changed_bird(tmp_path):
    gen = RepairingGenerator()
    result, _ = run(tmp_path, gen, repair="regions")
    first, second = result.rounds
    assert first.repair is None and second.repair.repaired and second.repair.base_round == 0
    assert second.repair.changed == ["added: a bird perched on a branch", "removed: a bird"]  # man and tree stayed
    assert gen.requests[0].repair is None and gen.requests[1].repair is not None
    store = RunStore(result.run_dir)
    before, after = store.load_image(first.image), store.load_image(second.image)
    inside = np.asarray(pixel_mask(second.repair.boxes, before.size)) > 0
    assert second.repair.share == pytest.approx(2 * 0.25 * 0.25 - 0.2 * 0.2) and 0.05 < inside.mean() < 0.12
    assert (px(after)[~inside] == px(before)[~inside]).all()  # exact outside the dilated mask
    assert (px(after)[inside] != px(before)[inside]).any()


def test_a_generator_without_a_repair_path_renders_anew_and_says_why(tmp_path):
    gen = CountingGenerator()
    result, _ = run(tmp_path, gen, repair="regions")
    record = result.rounds[1].repair
    assert not record.repaired and record.reason == "the generator counting has no repair path: rendered anew"
    assert record.changed and gen.requests[1].repair is None


def test_auto_renders_anew_when_the_mask_is_too_large(tmp_path):
    result, _ = run(tmp_path, RepairingGenerator(), repair="auto", repair_max_share=0.04)
    record = result.rounds[1].repair
    assert not record.repaired and "auto repairs below 4%" in record.reason
    result, _ = run(tmp_path / "b", RepairingGenerator(), repair="auto")
    assert result.rounds[1].repair.repaired


def test_repair_the_best_or_the_latest(tmp_path):
    replies = {"place": [PLACE], "self_correct": [CORRECTED, CORRECTED], "reason": [score(4), score(2), score(5)],
               "align": [ALIGNED, ALIGNED.replace("0.55, 0.2", "0.5, 0.25")]}
    best, _ = run(tmp_path, RepairingGenerator(), replies=replies, repair="regions")
    assert [r.repair.base_round for r in best.rounds[1:]] == [0, 0]  # round 1 scored worse than round 0
    latest, _ = run(tmp_path / "b", RepairingGenerator(), replies=replies, repair="regions", repair_base="latest")
    assert [r.repair.base_round for r in latest.rounds[1:]] == [0, 1]


def test_a_crashed_repair_resumes_from_its_checkpoint(tmp_path):
    model = RecordingChatModel(replies={k: list(v) for k, v in REPLIES.items()})
    with pytest.raises(BackendError, match="simulated crash"):
        guide(PROMPT, mllm=model, generator=_failing(),
              config={"repair": "regions", "width": 96, "height": 64}, run_dir=tmp_path / "run")
    asked = model.steps()
    gen = RepairingGenerator()
    result = resume(tmp_path / "run", mllm=model, generator=gen)
    assert model.steps() == asked + ["reason"] and len(gen.requests) == 1  # only the repair is done again
    assert gen.requests[0].repair is not None and result.rounds[1].repair.repaired and result.score == 5
    store = RunStore(result.run_dir)
    inside = np.asarray(pixel_mask(result.rounds[1].repair.boxes, (96, 64))) > 0
    assert (px(store.load_image(result.rounds[1].image))[~inside] == px(store.load_image(result.rounds[0].image))[~inside]).all()


def _failing():
    gen = RepairingGenerator()
    gen.fail_on = 2
    return gen


def test_four_candidates_the_verifier_picks_one_and_all_are_recorded(tmp_path, monkeypatch):
    verifier = LengthVerifier([0.1, 0.7, 0.3, 0.7])
    monkeypatch.setattr("mllm_guidance.nodes.generate.resolve_verifier", lambda name, model=None: verifier)
    gen = CountingGenerator()
    result, model = run(tmp_path, gen, replies={"place": [PLACE], "self_correct": [PLACE], "reason": [score(5)]},
                        candidates=4, verifier="clip", seed=10)
    [r] = result.rounds
    assert [q.seed for q in gen.requests] == [10, 11, 12, 13] and result.usage.generator_calls == 4
    assert [c.score for c in r.candidates] == [0.1, 0.7, 0.3, 0.7] and [c.chosen for c in r.candidates] == [False, True, False, False]
    assert r.seed == 11 and r.verifier == "clip" and r.image.sha256 == r.candidates[1].image.sha256  # a tie keeps the lower seed
    assert verifier.calls == [(PROMPT, result.rounds[0].layout, 4)]
    [(_, messages)] = [c for c in model.calls if c[0] == "reason"]  # the judge saw one image: the chosen one
    assert sum(1 for m in messages for part in (m.content if isinstance(m.content, list) else []) if part.get("type") == "image") == 1


def test_candidates_of_a_repair_are_candidate_repairs(tmp_path, monkeypatch):
    monkeypatch.setattr("mllm_guidance.nodes.generate.resolve_verifier", lambda name, model=None: LengthVerifier())
    gen = RepairingGenerator()
    result, _ = run(tmp_path, gen, repair="regions", candidates=2, verifier="clip")
    assert [q.repair is not None for q in gen.requests] == [False, False, True, True]
    assert result.usage.generator_calls == 4 and result.rounds[1].repair.repaired


def test_config_refuses_options_without_their_step():
    with pytest.raises(ConfigError, match="repair needs the align loop"):
        make_config(mode="place", repair="regions")
    with pytest.raises(ConfigError, match="needs a verifier"):
        make_config(candidates=2)
    with pytest.raises(ConfigError, match="pairwise"):
        make_config(mode="align", judge_mode="pairwise")


def test_run_json_and_the_report_show_the_repair_and_the_candidates(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr("mllm_guidance.nodes.generate.resolve_verifier", lambda name, model=None: LengthVerifier())
    result, _ = run(tmp_path, RepairingGenerator(), repair="regions", candidates=2, verifier="clip")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    second = record["rounds"][1]
    assert second["repair"]["repaired"] and second["repair"]["changed"] == ["added: a bird perched on a branch", "removed: a bird"]
    assert [c["image"]["path"] for c in second["candidates"]] == ["round-1-candidate-0.png", "round-1-candidate-1.png"]
    assert record["config"]["repair"] == "regions" and record["usage"]["generator_calls"] == 4
    page = (tmp_path / "run" / "report.html").read_text()
    assert 'aria-label="repair mask"' in page and 'mask id="repair-1"' in page and "repaired round 0 inside the mask" in page
    assert "2 candidates, picked by clip" in page and "round-1-candidate-1.png" in page


def test_pairwise_judging_breaks_a_tie_by_comparing_the_two_images(tmp_path):
    replies = {"place": [PLACE], "self_correct": [CORRECTED, CORRECTED], "reason": [score(3), score(3)],
               "align": [ALIGNED], "compare": ["I cannot tell.", "Reasoning: the bird sits in the tree in B.\nBetter: B"]}
    result, model = run(tmp_path, CountingGenerator(), replies=replies, judge_mode="pairwise", max_align_rounds=1)
    assert model.steps() == ["place", "self_correct", "reason", "align", "reason", "compare", "compare"]
    assert result.best_round == 1 and result.rounds[1].comparison.startswith("B (this round) is better: the bird")
    first, retry = [m for s, m in model.calls if s == "compare"]
    images = [p for p in first[-1].content if isinstance(p, dict) and p.get("type") == "image"]
    assert len(images) == 2 and "Image A (the best so far) and image B" in first[-1].content[0]["text"]
    assert "could not be used: no choice found" in retry[-1].content  # the parse error fed back
    import json

    calls = [c for c in json.loads((tmp_path / "run" / "run.json").read_text())["calls"] if c["step"] == "compare"]
    refs = [b["ref"] for b in calls[0]["request"][1]["content"] if b.get("type") == "image"]
    assert refs == ["round-0.png", "round-1.png"] and result.usage.mllm["compare"].calls == 2


def test_absolute_judging_keeps_the_earlier_image_on_a_tie_and_never_compares(tmp_path):
    replies = {"place": [PLACE], "self_correct": [CORRECTED, CORRECTED], "reason": [score(3), score(3)], "align": [ALIGNED]}
    result, model = run(tmp_path, CountingGenerator(), replies=replies, max_align_rounds=1)
    assert "compare" not in model.steps() and result.best_round == 0
    a_wins = dict(replies, compare=["Reasoning: A is clearer.\nBetter: A"])
    result, _ = run(tmp_path / "b", CountingGenerator(), replies=a_wins, judge_mode="pairwise", max_align_rounds=1)
    assert result.best_round == 0 and result.rounds[1].comparison == "A (round 0) is better: A is clearer."


def test_pairwise_judging_with_structured_output(tmp_path):
    replies = {"place": [PLACE], "self_correct": [CORRECTED, CORRECTED], "reason": [score(3), score(3)], "align": [ALIGNED],
               "compare": [{"__tool__": "CompareAnswer", "reasoning": "B shows the bird in the tree", "better": "b"}]}
    result, _ = run(tmp_path, CountingGenerator(), replies=replies, judge_mode="pairwise", max_align_rounds=1,
                    settings={"structured_steps": ["compare"]})
    assert result.best_round == 1 and result.rounds[1].comparison == "B (this round) is better: B shows the bird in the tree"
