"""``sketch``: draws the layout itself, labelled boxes on a plain canvas.

A layout preview that needs no GPU and no weights: see what the MLLM planned before paying for a
diffusion run, or run the whole loop offline. Native box format: normalized corners. Default size
512 x 512. The seed tints the canvas, so rounds with different seeds are told apart.
"""

from __future__ import annotations

import random

from mllm_guidance.backends.generator import GenerationRequest, Generated
from mllm_guidance.draw import draw_caption, draw_layout
from mllm_guidance.errors import BackendError


class SketchGenerator:
    name = "sketch"
    default_size = (512, 512)

    def __init__(self, model: str | None = None) -> None:
        if model:
            raise BackendError("the sketch generator draws the layout and takes no model (--model-path); "
                               "choose a diffusion generator, e.g. --generator gligen")

    def generate(self, request: GenerationRequest) -> Generated:
        from PIL import Image

        rng = random.Random(request.seed)
        tint = tuple(235 + rng.randrange(16) for _ in range(3))
        canvas = Image.new("RGB", (request.width, request.height), tint)
        if request.layout is None or request.layout.is_empty:
            return Generated(draw_caption(canvas, request.prompt), ["no layout: drew the prompt"])
        return Generated(draw_layout(canvas, request.layout, filled=True))
