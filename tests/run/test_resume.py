"""Resuming runs: after a crash, after an interrupt, and never into a directory that holds a run."""

import json

import pytest

from mllm_guidance import guide, resume
from mllm_guidance.errors import BackendError
from tests.conftest import PROMPT
from tests.graph.test_routes import run
from tests.fakes import ALIGNED, PLACE, CountingGenerator, RecordingChatModel, score

ALIGN_VARIANTS = [ALIGNED.replace("0.55, 0.2", f"0.{50 + i}, 0.2") for i in range(6)]


def test_resume_after_a_crash_repeats_nothing_done(tmp_path):
    replies = {"place": [PLACE], "self_correct": [PLACE], "reason": [score(3), score(5)], "align": [ALIGNED]}
    model = RecordingChatModel(replies=replies)
    with pytest.raises(BackendError, match="simulated crash"):
        guide(PROMPT, mllm=model, generator=CountingGenerator(fail_on=2), run_dir=tmp_path / "run")
    done_before = model.steps()
    assert done_before == ["place", "self_correct", "reason", "align"]
    gen = CountingGenerator()
    result = resume(tmp_path / "run", mllm=model, generator=gen)
    assert model.steps() == done_before + ["reason"]  # place/correct/align were not asked again
    assert len(gen.requests) == 1 and result.score == 5 and result.best_round == 1
    # resuming a finished run returns it without calling anything
    assert resume(tmp_path / "run", mllm=model, generator=gen).best_round == 1 and len(gen.requests) == 1


def test_resume_after_an_interrupt(tmp_path):
    class Interrupting(CountingGenerator):
        def generate(self, request):
            if not self.requests:
                self.requests.append(request)
                raise KeyboardInterrupt
            return super().generate(request)

    replies = {"place": [PLACE], "self_correct": [PLACE], "reason": [score(5)]}
    model = RecordingChatModel(replies=replies)
    with pytest.raises(KeyboardInterrupt):
        guide(PROMPT, mllm=model, generator=Interrupting(), run_dir=tmp_path / "run")
    result = resume(tmp_path / "run", mllm=model, generator=CountingGenerator())
    assert result.score == 5 and model.steps() == ["place", "self_correct", "reason"]


def test_run_directory_cannot_be_reused(tmp_path):
    from mllm_guidance.errors import InputError

    run(tmp_path, {"place": [PLACE], "self_correct": [PLACE], "reason": [score(5)]})
    with pytest.raises(InputError, match="already holds a run"):
        run(tmp_path, {})


def test_a_run_recorded_before_the_settings_left_the_config_resumes_with_them(tmp_path):
    """spec.json written before issue 26 holds mllm_image_side & co. in its config: the run resumes,
    asking the MLLM as it was set up (a 256-pixel PNG), and run.json records the settings apart."""
    replies = {"place": [PLACE], "self_correct": [PLACE], "reason": [score(3), score(5)], "align": [ALIGNED]}
    model = RecordingChatModel(replies=replies)
    with pytest.raises(BackendError, match="simulated crash"):
        guide(PROMPT, mllm=model, generator=CountingGenerator(fail_on=2), run_dir=tmp_path / "run",
              settings={"mllm_image_side": 256, "mllm_image_format": "png"})
    spec_path = tmp_path / "run" / "spec.json"
    spec = json.loads(spec_path.read_text())
    spec["config"].update(spec.pop("settings"))  # the older layout
    spec_path.write_text(json.dumps(spec))
    result = resume(tmp_path / "run", mllm=model, generator=CountingGenerator())
    assert result.score == 5
    import base64
    import io

    from PIL import Image

    step, messages = model.calls[-1]
    [block] = [b for b in messages[-1].content if b.get("type") == "image"]
    sent = Image.open(io.BytesIO(base64.b64decode(block["base64"])))
    assert step == "reason" and sent.format == "PNG" and max(sent.size) <= 256
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["settings"]["mllm_image_side"] == 256 and "mllm_image_side" not in record["config"]
