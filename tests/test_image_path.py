"""The image path off the critical path (issue 25): images written in the background while the MLLM
judges them, read from memory, completed by the step that reads them; final.png and bench images
as hard links; round images as lossless WebP or JPEG with a PNG final image."""

import errno
import hashlib
import os
import threading

import pytest
from PIL import Image, ImageChops

from mllm_guidance import guide, resume
from mllm_guidance.errors import BackendError
from mllm_guidance.store import RunStore
from tests.conftest import PROMPT
from tests.fakes import ALIGNED, PLACE, CountingGenerator, RecordingChatModel, score


class NoisyGenerator(CountingGenerator):
    """Renders noise (so a lossy format changes pixels); keeps every image it returned."""

    name = "noisy"

    def __init__(self, fail_on=None):
        super().__init__(fail_on)
        self.images = []

    def generate(self, request):
        super().generate(request)
        image = Image.effect_noise((request.width, request.height), 40 + 10 * len(self.requests)).convert("RGB")
        self.images.append(image.copy())
        return image


def replies(scores=(3, 5)):
    aligns = [ALIGNED.replace("0.55, 0.2", f"0.{50 + i}, 0.2") for i in range(len(scores))]
    return {"place": [PLACE], "self_correct": [PLACE], "reason": [score(s) for s in scores], "align": aligns}


def test_a_started_image_is_read_from_memory_before_its_file_exists_and_completed_from_the_file(tmp_path, monkeypatch):
    import mllm_guidance.store as store_module

    gate = threading.Event()
    encode = store_module.encode_file
    monkeypatch.setattr(store_module, "encode_file", lambda image, suffix: (gate.wait(10), encode(image, suffix))[1])
    store = RunStore(tmp_path)
    ref = store.start_image(Image.new("RGB", (200, 100), (10, 20, 30)), "round-0.png")
    assert ref.sha256 is None and ref.bytes is None and (ref.width, ref.height) == (200, 100)
    assert not (tmp_path / "round-0.png").exists()
    sent = store.image_for_model(ref, 50)  # the MLLM's copy, while the file is still being written
    assert sent.mime_type == "image/jpeg" and store.load_image(ref).getpixel((0, 0)) == (10, 20, 30)
    gate.set()
    done = store.finish_image(ref)
    data = (tmp_path / "round-0.png").read_bytes()
    assert done.sha256 == hashlib.sha256(data).hexdigest() and done.bytes == len(data)
    assert [p.name for p in tmp_path.iterdir()] == ["round-0.png"]  # no temporary file left
    # a reference whose writer is gone (a resumed process) is completed from the file as found
    assert RunStore(tmp_path).finish_image(ref) == done


def test_a_failed_background_write_is_the_stores_one_line_where_the_round_completes(tmp_path, monkeypatch):
    from mllm_guidance.errors import StorageError

    store = RunStore(tmp_path)
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    ref = store.start_image(Image.new("RGB", (8, 8)), "round-0.png")
    with pytest.raises(StorageError, match="no space left"):
        store.finish_image(ref)


def test_final_png_is_a_hard_link_to_the_best_rounds_png_and_every_reference_is_complete(tmp_path):
    result = guide(PROMPT, mllm=RecordingChatModel(replies=replies()), generator=CountingGenerator(), run_dir=tmp_path / "run")
    run = tmp_path / "run"
    best = run / result.rounds[result.best_round].image.path
    assert os.path.samefile(run / "final.png", best) and result.image.sha256 == result.rounds[1].image.sha256
    for r in result.rounds:
        data = (run / r.image.path).read_bytes()
        assert r.image.sha256 == hashlib.sha256(data).hexdigest() and r.image.bytes == len(data)


def test_final_png_is_a_copy_where_links_cannot_be_made(tmp_path, monkeypatch):
    def no_links(*args):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    result = guide(PROMPT, mllm=RecordingChatModel(replies=replies((5,))), generator=CountingGenerator(),
                   run_dir=tmp_path / "run")
    final, round0 = tmp_path / "run" / "final.png", tmp_path / "run" / "round-0.png"
    assert not os.path.samefile(final, round0) and final.read_bytes() == round0.read_bytes()
    assert result.image.sha256 == hashlib.sha256(final.read_bytes()).hexdigest()


def test_no_checkpoint_is_stored_while_an_image_it_may_name_is_being_written(tmp_path, monkeypatch):
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    stores, seen = [], []
    start = RunStore.start_image

    def remember(self, image, name):
        stores.append(self)
        return start(self, image, name)

    def checked(method):
        async def wrapper(self, *args, **kwargs):
            seen.append(all(f.done() for s in stores for f in s._pending.values()))
            return await method(self, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(RunStore, "start_image", remember)
    monkeypatch.setattr(AsyncSqliteSaver, "aput", checked(AsyncSqliteSaver.aput))
    monkeypatch.setattr(AsyncSqliteSaver, "aput_writes", checked(AsyncSqliteSaver.aput_writes))
    guide(PROMPT, mllm=RecordingChatModel(replies=replies()), generator=NoisyGenerator(), run_dir=tmp_path / "run",
          config={"width": 256, "height": 256})
    assert stores and len(seen) > 10 and all(seen)


def test_a_run_resumed_after_its_judge_failed_completes_the_round_from_the_file(tmp_path):
    failing = replies()
    failing["reason"] = [RuntimeError("provider down")]
    with pytest.raises(BackendError, match="provider down"):
        guide(PROMPT, mllm=RecordingChatModel(replies=failing), generator=CountingGenerator(), run_dir=tmp_path / "run")
    assert (tmp_path / "run" / "round-0.png").exists()
    result = resume(tmp_path / "run", mllm=RecordingChatModel(replies={"reason": [score(5)]}), generator=CountingGenerator())
    data = (tmp_path / "run" / "round-0.png").read_bytes()
    assert result.score == 5 and result.rounds[0].image.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("fmt, suffix, lossless", [("webp", ".webp", True), ("jpeg", ".jpg", False)])
def test_rounds_kept_as_webp_or_jpeg_and_the_final_image_is_the_renders_own_pixels_as_png(tmp_path, fmt, suffix, lossless):
    gen = NoisyGenerator()
    # round 0 scores 4 and stays the best, older than the renders the store keeps anyway
    result = guide(PROMPT, mllm=RecordingChatModel(replies=replies((4, 3, 3))), generator=gen, run_dir=tmp_path / "run",
                   config={"max_align_rounds": 2, "width": 96, "height": 96}, settings={"round_format": fmt})
    run = tmp_path / "run"
    assert [r.image.path for r in result.rounds] == [f"round-{k}{suffix}" for k in range(3)] and result.best_round == 0
    assert Image.open(run / "final.png").format == "PNG" and not list(run.glob("round-*.png"))
    assert ImageChops.difference(Image.open(run / "final.png").convert("RGB"), gen.images[0]).getbbox() is None
    stored = Image.open(run / f"round-0{suffix}").convert("RGB")
    assert (ImageChops.difference(stored, gen.images[0]).getbbox() is None) == lossless
    assert 'src="round-0' + suffix in (run / "report.html").read_text()


def test_the_bench_image_is_a_hard_link_to_the_runs_final_png(tmp_path):
    import asyncio

    from mllm_guidance.eval.runner import BenchSpec, run_bench
    from tests.fakes import StepChatModel

    data = tmp_path / "prompts.txt"
    data.write_text("A cat sits next to a dog.\n")
    records = asyncio.run(run_bench(BenchSpec(dataset=str(data), out=tmp_path / "out", mllm=StepChatModel(),
                                              generator="sketch", config={"self_correct": False})))
    (record,) = records
    assert os.path.samefile(tmp_path / "out" / record["image"], tmp_path / "out" / record["run_dir"] / "final.png")


def test_usage_is_written_once_by_finish_and_counts_what_the_steps_used(tmp_path):
    import sqlite3

    model = RecordingChatModel(replies=replies())
    result = guide(PROMPT, mllm=model, generator=CountingGenerator(), run_dir=tmp_path / "run")
    with sqlite3.connect(tmp_path / "run" / "checkpoints.sqlite") as db:
        writers = db.execute("SELECT count(*) FROM writes WHERE channel = 'usage'").fetchone()[0]
    assert writers == 2  # begin's reset of a reused thread, finish's count: no MLLM step, no render
    u = result.usage
    assert u.mllm_calls == len(model.calls) == 5 and u.generator_calls == 2
    assert (u.input_tokens, u.output_tokens) == (5 * 100, 5 * 20) and u.mllm["reason"].calls == 2


def test_a_resumed_run_counts_only_the_calls_its_committed_steps_used(tmp_path):
    failing = replies()
    failing["align"] = [RuntimeError("provider down")]
    with pytest.raises(BackendError):
        guide(PROMPT, mllm=RecordingChatModel(replies=failing), generator=CountingGenerator(), run_dir=tmp_path / "run")
    again = RecordingChatModel(replies={"align": [ALIGNED], "reason": [score(5)]})
    result = resume(tmp_path / "run", mllm=again, generator=CountingGenerator())
    assert result.usage.mllm_calls == 3 + 2 and result.usage.generator_calls == 2


def _latest_versions(db_path):
    import sqlite3

    from mllm_guidance.checkpoint import serializer

    with sqlite3.connect(db_path) as db:
        kind, blob = db.execute("SELECT type, checkpoint FROM checkpoints ORDER BY rowid DESC LIMIT 1").fetchone()
    return list(serializer().loads_typed((kind, blob))["channel_versions"].values())


def test_checkpoints_use_integer_versions_and_a_file_with_string_versions_resumes_with_them(tmp_path, monkeypatch):
    from mllm_guidance import checkpoint

    guide(PROMPT, mllm=RecordingChatModel(replies=replies((5,))), generator=CountingGenerator(), run_dir=tmp_path / "new")
    assert all(isinstance(v, int) for v in _latest_versions(tmp_path / "new" / "checkpoints.sqlite"))

    async def older_release(conn, serde):  # how runs were stored before: LangGraph's SQLite string versions
        return True

    failing = replies()
    failing["align"] = [RuntimeError("provider down")]
    with monkeypatch.context() as m:
        m.setattr(checkpoint, "_written_with_string_versions", older_release)
        with pytest.raises(BackendError):
            guide(PROMPT, mllm=RecordingChatModel(replies=failing), generator=CountingGenerator(), run_dir=tmp_path / "old")
    assert all(isinstance(v, str) for v in _latest_versions(tmp_path / "old" / "checkpoints.sqlite"))
    again = RecordingChatModel(replies={"align": [ALIGNED], "reason": [score(5)]})
    result = resume(tmp_path / "old", mllm=again, generator=CountingGenerator())
    assert result.score == 5 and all(isinstance(v, str) for v in _latest_versions(tmp_path / "old" / "checkpoints.sqlite"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_writes_images_with_threads_of_its_own(tmp_path):
    RunStore(tmp_path / "parent").save_image(Image.new("RGB", (8, 8)), "a.png")  # the parent's writers exist
    pid = os.fork()
    if pid == 0:  # the child: a write must complete, not wait forever on the parent's threads
        try:
            RunStore(tmp_path / "child").save_image(Image.new("RGB", (8, 8)), "b.png")
        finally:
            os._exit(0)
    import signal
    import time

    for _ in range(600):  # 60 s at most: a child stuck on its parent's threads is killed, and fails the test
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child never finished writing its image")
    assert os.waitstatus_to_exitcode(status) == 0 and (tmp_path / "child" / "b.png").exists()
