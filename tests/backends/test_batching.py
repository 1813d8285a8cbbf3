"""Coalescing concurrent renders into batches (backends.batching), on a sketch generator that batches."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mllm_guidance.backends.batching import BatchingGenerator, coalescing
from mllm_guidance.backends.generator import GenerationRequest, render, render_batch
from mllm_guidance.backends.sketch import SketchGenerator
from mllm_guidance.layout import Layout

LAYOUT = Layout.from_pairs([("a cat", [0.1, 0.1, 0.5, 0.5])])


class BatchSketch(SketchGenerator):
    """Sketches a batch in one call that takes ``seconds``; refuses prompts containing 'bad'."""

    name = "batch-sketch"

    def __init__(self, seconds=0.05):
        super().__init__()
        self.seconds, self.calls, self.active, self.most_active = seconds, [], 0, 0
        self._lock = threading.Lock()

    def generate(self, request):
        return self.generate_batch([request])[0]

    def generate_batch(self, requests):
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.calls.append([r.seed for r in requests])
        try:
            time.sleep(self.seconds)
            if any("bad" in r.prompt for r in requests):
                raise ValueError("a bad prompt in the batch")
            return [super(BatchSketch, self).generate(r) for r in requests]
        finally:
            with self._lock:
                self.active -= 1


def req(seed, prompt="a cat", size=64):
    return GenerationRequest(prompt=prompt, layout=LAYOUT, seed=seed, width=size, height=size)


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def test_concurrent_renders_are_coalesced_and_each_gets_its_own_image():
    inner = BatchSketch()
    gen = BatchingGenerator(inner, max_batch=4, max_wait=0.05)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda s: render(gen, req(s)), range(8)))
    alone = SketchGenerator()
    for seed, result in enumerate(results):
        assert (pixels(result.image) == pixels(alone.generate(req(seed)).image)).all()  # the seed tints the canvas
    assert sorted(s for call in inner.calls for s in call) == list(range(8))
    assert max(len(c) for c in inner.calls) == 4 and len(inner.calls) <= 4
    assert inner.most_active == 1  # batches take turns on the device
    assert gen.name == "batch-sketch" and gen.default_size == (512, 512)


def test_requests_that_cannot_share_a_call_go_in_separate_batches():
    inner = BatchSketch()
    gen = BatchingGenerator(inner, max_batch=8, max_wait=0.05)
    sizes = [64, 128] * 3
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: gen.generate(req(i, size=sizes[i])), range(6)))
    assert [r.image.size for r in results] == [(s, s) for s in sizes]
    by_seed = {s: call for call in inner.calls for s in call}
    assert all(sizes[s] == sizes[t] for call in inner.calls for s in call for t in call)
    assert len(by_seed) == 6


def test_a_bad_request_fails_alone():
    inner = BatchSketch()
    gen = BatchingGenerator(inner, max_batch=4, max_wait=0.05)

    def one(i):
        try:
            return gen.generate(req(i, prompt="a bad cat" if i == 2 else "a cat")).image.size
        except ValueError as exc:
            return str(exc)

    with ThreadPoolExecutor(4) as pool:
        out = list(pool.map(one, range(4)))
    assert out == [(64, 64), (64, 64), "a bad prompt in the batch", (64, 64)]


def test_a_lone_request_waits_at_most_max_wait():
    gen = BatchingGenerator(BatchSketch(seconds=0.0), max_batch=4, max_wait=0.02)
    started = time.perf_counter()
    gen.generate(req(0))
    assert time.perf_counter() - started < 1.0


def test_render_batch_falls_back_to_lone_renders_and_coalescing_only_wraps_batchers():
    plain = SketchGenerator()
    assert [r.image.size for r in render_batch(plain, [req(0), req(1, size=128)])] == [(64, 64), (128, 128)]
    assert coalescing(plain, 4) is plain
    inner = BatchSketch()
    assert coalescing(inner, 1) is inner and isinstance(coalescing(inner, 4), BatchingGenerator)
    inner.max_batch_size = 2
    assert coalescing(inner, 4).max_batch == 2


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError):
        BatchingGenerator(BatchSketch(), max_batch=0)
