"""Layout adherence with a tiny random OWLv2 built from its config (loaded by the real loading code),
per-round plan / render diagnosis, the verifier call, and `bench score` adding it to a finished benchmark."""

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")

from mllm_guidance.cli import main  # noqa: E402
from mllm_guidance.eval.layout_adherence import (  # noqa: E402
    Adherence,
    LayoutAdherenceScorer,
    iou,
    judge_missing,
    layout_pairs,
)
from mllm_guidance.eval.scorers import ScoreItem, build_scorers, verifier_score  # noqa: E402
from mllm_guidance.layout import Layout  # noqa: E402
from tests.eval.test_bench_cli import stub_answers  # noqa: E402
from tests.stubs import StubServer  # noqa: E402


def noise(width, height, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))


def test_boxes_layouts_and_what_the_judge_calls_missing():
    assert iou((0, 0, 0.5, 0.5), (0, 0, 0.5, 0.5)) == 1.0 and iou((0, 0, 0.5, 0.5), (0.5, 0.5, 1, 1)) == 0.0
    assert iou((0, 0, 0.5, 0.5), (0.25, 0, 0.75, 0.5)) == pytest.approx(1 / 3)
    layout = Layout.from_pairs([("a red cat", [0.1, 0.1, 0.4, 0.4]), ("a dog", [0.5, 0.5, 0.9, 0.9])])
    pairs = [("a red cat", (0.1, 0.1, 0.4, 0.4)), ("a dog", (0.5, 0.5, 0.9, 0.9))]
    assert layout_pairs(layout) == pairs == layout_pairs(layout.model_dump(mode="json")) == layout_pairs(pairs)
    assert layout_pairs(None) is None
    with pytest.raises(Exception, match="a box needs 4 numbers"):
        layout_pairs([("a cat", [0.1, 0.2])])
    names = ["a red cat", "two dogs", "a tree"]
    assert judge_missing("The cat is there, but the dog is missing; a tree stands.", names) == ["two dogs"]
    assert judge_missing("No cats appear. The trees are not visible.", names) == ["a red cat", "a tree"]
    assert judge_missing("Everything matches the prompt.", names) == [] and judge_missing(None, names) == []


def test_detections_match_transformers_post_processing_on_a_wide_image(tiny_owlv2):
    import torch

    scorer = LayoutAdherenceScorer(tiny_owlv2, threshold=0.0)
    image = noise(96, 64)  # OWLv2 pads to a square: boxes come back relative to the padded image
    queries = ["a cat", "a dog"]
    ours = scorer.detect([image], [queries])[0]
    inputs = scorer.processor(text=[queries], images=[image], return_tensors="pt", truncation=True, max_length=32)
    with torch.no_grad():
        outputs = scorer.model(**inputs)
    theirs = scorer.processor.post_process_grounded_object_detection(outputs, threshold=0.0, target_sizes=[(96, 96)])[0]
    scores = outputs.logits[0].sigmoid()
    for p, (label, box) in enumerate(zip(theirs["labels"].tolist(), theirs["boxes"].tolist(), strict=True)):
        expected = [min(max(v / size, 0.0), 1.0) for v, size in zip(box, (96, 64, 96, 64), strict=True)]
        score, got = ours[label][p]
        assert got == pytest.approx(expected, abs=1e-5) and score == pytest.approx(float(scores[p, label]), abs=1e-6)
    assert [len(q) for q in ours] == [16, 16]  # (64 / 16)^2 patches, every one a candidate at threshold 0


def test_each_object_gets_its_best_iou_and_the_image_its_recall_and_mean(tiny_owlv2):
    scorer = LayoutAdherenceScorer(tiny_owlv2, threshold=0.0)
    image = noise(64, 64, seed=1)
    detections = scorer.detect([image], [["a cat", "a dog"]])[0]
    hit = next(box for _, box in detections[0] if (box[2] - box[0]) * (box[3] - box[1]) > 0.01)
    layout = [("a cat", hit), ("a dog", (0.05, 0.05, 0.3, 0.3))]
    got = scorer.adherence(image, layout)
    dog_best = max(iou((0.05, 0.05, 0.3, 0.3), box) for _, box in detections[1])
    assert got.objects[0][2] == pytest.approx(1.0) and got.objects[1][2] == pytest.approx(dog_best)
    assert got.recall == (0.5 if dog_best < 0.5 else 1.0) and got.mean_iou == pytest.approx((1 + dog_best) / 2)
    strict = LayoutAdherenceScorer(tiny_owlv2, threshold=1.01)  # nothing detected: nothing found
    assert strict.adherence(image, layout).objects[0][2] == 0.0 and strict.adherence(image, layout).recall == 0.0
    # the verifier's call: the primary number of a built scorer for one candidate
    built = build_scorers(["layout-adherence"], detector=tiny_owlv2, detector_threshold=0.0)[0]
    assert verifier_score(built, "a cat and a dog", image, layout) == pytest.approx(got.mean_iou)
    assert verifier_score(built, "a cat and a dog", image, None) is None
    metrics, details = built.score_items([ScoreItem("a cat and a dog", image, layout=layout)])[0]
    assert metrics == {"layout_recall": got.recall, "layout_miou": got.mean_iou} and details["objects"][0]["name"] == "a cat"


class Scripted(LayoutAdherenceScorer):
    """The real scorer with the detector's answer fixed per phrase: each phrase detected at one box."""

    boxes = {}

    def detect(self, images, queries):
        return [[[(0.9, self.boxes[q])] if q in self.boxes else [] for q in qs] for qs in queries]


def test_each_round_says_whether_the_plan_or_the_render_failed(tiny_owlv2, tmp_path):
    for i in range(3):
        noise(32, 32, seed=i).save(tmp_path / f"round-{i}.png")
    cat, dog = {"name": "a cat", "box": [0.0, 0.0, 0.5, 0.5]}, {"name": "a dog", "box": [0.5, 0.5, 1.0, 1.0]}

    def round_(i, objects, good, reasoning):
        return {"index": i, "layout": {"objects": objects}, "image": {"path": f"round-{i}.png"}, "score": 5 if good else 2,
                "good": good, "reasoning": reasoning}

    run = {"best_round": 2, "rounds": [
        round_(0, [cat], False, "The dog is missing."),  # the plan forgot the dog: drawn as planned, still bad
        round_(1, [cat, {**dog, "box": [0.0, 0.5, 0.5, 1.0]}], False, "There is no dog."),  # planned, drawn elsewhere
        round_(2, [cat, {**dog, "box": [0.55, 0.5, 1.0, 1.0]}], True, "All there."),
    ]}
    scorer = Scripted(tiny_owlv2)
    Scripted.boxes = {"a cat": (0.0, 0.0, 0.5, 0.5), "a dog": (0.55, 0.5, 1.0, 1.0)}
    rounds = scorer.diagnose(run, tmp_path)
    assert [r["failed"] for r in rounds] == ["plan", "render", None]
    assert rounds[1]["missed"] == ["a dog"] and rounds[1]["judge_missing"] == ["a dog"] and rounds[0]["found"] == ["a cat"]
    assert rounds[1]["recall"] == 0.5 and rounds[2]["recall"] == 1.0
    run["rounds"][0]["image"]["path"] = "../outside.png"
    with pytest.raises(Exception, match="outside its run directory"):
        scorer.diagnose(run, tmp_path)


def test_bench_score_adds_layout_adherence_to_a_finished_benchmark_without_rendering(tmp_path, tiny_owlv2, capsys):
    data = tmp_path / "p.txt"
    data.write_text("A man sits under a tree with a bird.\nA bird above a tree.\n")
    out = tmp_path / "b"
    with StubServer(stub_answers) as stub:
        assert main(["bench", "--dataset", str(data), "--mllm", "openai:gpt-4o", "--mllm-base-url", stub.url + "/v1",
                     "--generator", "sketch", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    images = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    # no MLLM server any more and no generator flag: scoring alone
    assert main(["bench", "score", str(out), "--scorer", "layout-adherence", "--detector", tiny_owlv2,
                 "--detector-threshold", "0"]) == 0
    printed = capsys.readouterr().out
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2 and {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()} == images
    for r in records:
        assert 0 <= r["metrics"]["layout_recall"] <= 1 and 0 <= r["metrics"]["layout_miou"] <= 1
        scoring = r["scoring"]["layout-adherence"]
        assert [o["name"] for o in scoring["objects"]] == ["a man sitting", "a tree", "a bird"]
        assert scoring["rounds"][0]["failed"] is None and scoring["settings"]["model"] == tiny_owlv2
    assert "Layout mean IoU (detector)" in printed and "Layout mean IoU (detector)" in (out / "summary.md").read_text()
    assert main(["bench", "score", str(tmp_path / "nothing"), "--scorer", "layout-adherence"]) == 2
    assert "has no results.jsonl" in capsys.readouterr().err


def test_a_missing_scorer_model_stops_bench_before_the_first_render(tmp_path, capsys):
    data = tmp_path / "p.txt"
    data.write_text("a cat\n")
    out = tmp_path / "x"
    assert main(["bench", "--dataset", str(data), "--method", "plain", "--generator", "sketch", "--scorer", "layout-adherence",
                 "--detector", str(tmp_path / "no-such-detector"), "--quiet", "--out", str(out)]) == 2
    assert "cannot load detector" in capsys.readouterr().err and not (out / "results.jsonl").exists()


def test_adherence_of_an_empty_layout_is_zero():
    assert Adherence([]).recall == 0.0 and Adherence([]).mean_iou == 0.0
