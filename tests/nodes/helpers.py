from __future__ import annotations

from PIL import Image

from mllm_guidance.layout import Layout
from mllm_guidance.state import GuidanceState, Plan, Round

LAYOUT = Layout.from_pairs([("a man sitting", [0.1, 0.45, 0.45, 0.95]), ("a tree", [0.35, 0.05, 0.95, 0.9])])


def state_with_round(ctx, prompt, layout=LAYOUT, score=None, rounds=1, **extra) -> GuidanceState:
    """A state whose last round has an image on disk, as after a generate step."""
    made = []
    for k in range(rounds):
        ref = ctx.store.save_image(Image.new("RGB", (64, 48), (k * 40, 100, 100)), f"round-{k}.png")
        made.append(Round(index=k, layout=layout, layout_source="place", seed=0, image=ref, score=score if k < rounds - 1 else None))
    return GuidanceState(prompt=prompt, plan=Plan(layout=layout, source="place"), rounds=made, **extra)


def _called_synchronously(cls):
    """The node class, with calls that run its coroutine to the end (nodes are async). ``Node(cfg)``
    runs it under that config (and ``Node(settings=...)`` with those run settings), put into the
    runtime's context as the run layer does."""
    import asyncio
    import dataclasses

    from langgraph.runtime import Runtime

    class Node(cls):
        def __init__(self, config=None, settings=None):
            self.given = {k: v for k, v in (("config", config), ("settings", settings)) if v is not None}

        def __call__(self, state, runtime):
            if self.given:
                runtime = Runtime(context=dataclasses.replace(runtime.context, **self.given),
                                  stream_writer=runtime.stream_writer)
            return asyncio.run(super().__call__(state, runtime))

    Node.__name__ = Node.__qualname__ = cls.__name__
    return Node


from mllm_guidance import nodes as _nodes  # noqa: E402

AlignNode = _called_synchronously(_nodes.AlignNode)
GenerateNode = _called_synchronously(_nodes.GenerateNode)
PlaceNode = _called_synchronously(_nodes.PlaceNode)
ReasonNode = _called_synchronously(_nodes.ReasonNode)
SelfCorrectNode = _called_synchronously(_nodes.SelfCorrectNode)
