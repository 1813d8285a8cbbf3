"""GenEval: its rules on hand-made detections, the scorer on a tiny random Mask2Former and CLIP built from
configs, and `bench --suite geneval` / `--suite genai-bench` end to end on the sketch generator and a stub MLLM."""

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("transformers")

from mllm_guidance.cli import main  # noqa: E402
from mllm_guidance.eval.datasets import load_dataset  # noqa: E402
from mllm_guidance.eval.geneval import (  # noqa: E402
    TASKS,
    GenEvalScorer,
    class_names,
    evaluate,
    geneval_table,
    metadata,
    relative_position,
)
from mllm_guidance.eval.scorers import ScoreItem  # noqa: E402
from mllm_guidance.eval.suites import resolve_suite  # noqa: E402
from tests.eval.test_bench_cli import stub_answers  # noqa: E402
from tests.stubs import StubServer  # noqa: E402


def test_the_prompt_set_is_genevals_553_in_six_tasks():
    name, prompts = load_dataset("geneval")
    assert name == "geneval" and len(prompts) == 553 and prompts[0].text == "a photo of a bench"
    tags = [metadata()[p.text]["tag"] for p in prompts]
    assert {t: tags.count(t) for t in TASKS} == {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94,
                                                 "position": 100, "color_attr": 100}
    assert len(class_names()) == 80 and class_names()[:3] == ("person", "bicycle", "car")
    assert len(load_dataset("genai-bench")[1]) == 527


def test_relative_position_shrinks_offsets_by_the_boxes_sizes():
    a, b = [0, 0, 10, 10], [30, 0, 40, 10]
    assert relative_position(a, b) == {"left of"} and relative_position(b, a) == {"right of"}
    assert relative_position([0, 0, 10, 10], [0, 30, 10, 40]) == {"above"}
    assert relative_position([0, 0, 10, 10], [1, 0, 11, 10]) == set()  # within 0.1 x the sizes: no relation
    assert relative_position([0, 0, 10, 10], [30, 30, 40, 40]) == {"left of", "above"}


def test_genevals_rules_on_hand_made_detections():
    def objs(*boxes):
        return [(list(b) + [0.99], None) for b in boxes]

    never = lambda name, found: pytest.fail("no colour asked")  # noqa: E731
    two_clocks = {"include": [{"class": "clock", "count": 2}], "exclude": [{"class": "clock", "count": 3}]}
    assert evaluate({"clock": objs([0, 0, 5, 5], [10, 0, 15, 5])}, two_clocks, never) == (True, [])
    assert evaluate({"clock": objs([0, 0, 5, 5])}, two_clocks, never)[0] is False
    ok, reasons = evaluate({"clock": objs([0, 0, 5, 5], [10, 0, 15, 5], [20, 0, 25, 5])}, two_clocks, never)
    assert not ok and reasons == ["expected clock<3, found 3"]
    position = metadata()["a photo of a dog right of a teddy bear"]
    bear, dog_right, dog_left = [0, 0, 10, 10], [40, 0, 50, 10], [-40, 0, -30, 10]
    assert evaluate({"teddy bear": objs(bear), "dog": objs(dog_right)}, position, never)[0] is True
    assert evaluate({"teddy bear": objs(bear), "dog": objs(dog_left)}, position, never)[1] == [
        "expected dog right of target, found left of target"]
    assert evaluate({"dog": objs(dog_right)}, position, never)[1] == ["expected teddy bear>=1, found 0", "no target for dog to be right of"]
    colour = metadata()["a photo of a purple wine glass and a black apple"]
    seen = {}
    verdict = evaluate({"wine glass": objs(bear), "apple": objs(dog_right)}, colour,
                       lambda name, found: seen.setdefault(name, ["purple"] if name == "wine glass" else ["red"]))
    assert verdict == (False, ["expected black apple>=1, found 0 black"]) and set(seen) == {"wine glass", "apple"}


def test_the_scorer_runs_mask2former_and_clip_as_loaded_from_checkpoints(tiny_mask2former, tiny_clip):
    scorer = GenEvalScorer(tiny_mask2former, clip_model=tiny_clip)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8))
    found = scorer.detect(image, threshold=0.0)
    assert found and all(name in class_names() for name in found)
    for objects in found.values():
        assert len(objects) <= 16 and [o[0][4] for o in objects] == sorted((o[0][4] for o in objects), reverse=True)
        for box, mask in objects:
            assert mask.shape == (64, 96) and mask.dtype == bool
            if mask.any():  # the box is the mask's extent, mmdet's mask2bbox
                ys, xs = np.nonzero(mask)
                assert box[:4] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    name, objects = next(iter(found.items()))
    assert all(c in {"red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"}
               for c in scorer.colors_of(image, name, objects[:2]))
    assert scorer.detect(image, threshold=1.0) == {}
    (metrics, details), = scorer.score_items([ScoreItem("a photo of a bench", image)])
    assert metrics["geneval"] in (0.0, 1.0) and details["tag"] == "single_object"
    with pytest.raises(Exception, match="553 prompts"):
        scorer.score_items([ScoreItem("a cat on a mat", image)])


def test_genevals_table_is_per_task_and_the_mean_of_tasks():
    def rec(tag, ok):
        return {"status": "ok", "metrics": {"geneval": float(ok)}, "scoring": {"geneval": {"tag": tag}}}

    row = geneval_table([rec("single_object", 1), rec("single_object", 1), rec("counting", 0), rec("counting", 1)])
    assert row["Single Obj."] == 1.0 and row["Counting"] == 0.5 and row["Position"] is None and row["Overall"] == 0.75


def test_suites_pick_prompts_images_and_scorers():
    assert resolve_suite("geneval", None, None, []) == ("geneval", 4, ["geneval"])
    assert resolve_suite("genai-bench", None, 2, ["clipscore"]) == ("genai-bench", 2, ["vqascore", "clipscore"])
    assert resolve_suite("t2i-compbench", "spatial", None, []) == ("spatial", 1, ["mllm"])
    with pytest.raises(Exception, match="--suite geneval runs geneval"):
        resolve_suite("geneval", "rls300", None, [])
    with pytest.raises(Exception, match="unknown suite 'drawbench'"):
        resolve_suite("drawbench", None, None, [])


def test_bench_suite_geneval_end_to_end_prints_genevals_table(tmp_path, tiny_mask2former, tiny_clip, capsys):
    out = tmp_path / "g"
    with StubServer(stub_answers) as stub:
        assert main(["bench", "--suite", "geneval", "--limit", "4", "--generator", "sketch", "--mllm", "openai:gpt-4o",
                     "--mllm-base-url", stub.url + "/v1", "--geneval-detector", tiny_mask2former, "--geneval-clip-model",
                     tiny_clip, "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 16 and {r["image_index"] for r in records} == {0, 1, 2, 3}  # 4 prompts x 4 images
    assert all(r["metrics"]["geneval"] in (0.0, 1.0) and r["scoring"]["geneval"]["tag"] == "single_object" for r in records)
    assert "| Method | Single Obj. | Two Obj. | Counting | Colors | Position | Color Attri. | Overall |" in printed
    assert "GenEval (djghosh13/geneval" in (out / "summary.md").read_text()


def test_bench_suite_genai_bench_scores_vqascore_on_a_tiny_vlm(tmp_path, capsys):
    from unittest import mock

    from tests.backends import tiny_vlm

    with mock.patch.object(tiny_vlm, "WORDS", tiny_vlm.WORDS + ["Yes"]):
        vlm = tiny_vlm.build_tiny_gemma3(tmp_path / "vlm")
    out = tmp_path / "v"
    with StubServer(stub_answers) as stub:
        assert main(["bench", "--suite", "genai-bench", "--limit", "2", "--generator", "sketch", "--mllm", "openai:gpt-4o",
                     "--mllm-base-url", stub.url + "/v1", "--vqascore-model", f"transformers:{vlm}", "--quiet",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(0 < r["metrics"]["vqascore"] < 1 for r in records)
    assert "VQAScore: t2v_metrics (" in printed and "not the paper model" in printed
