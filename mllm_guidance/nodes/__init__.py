"""The graph's nodes: place, self_correct, generate, reason, align, finish; one module each.

Each node is a small class built with the run's ``GuidanceConfig`` and called with the state and
``Runtime[Context]``; it returns only the state fields it changes.
"""

from mllm_guidance.nodes.align import AlignNode
from mllm_guidance.nodes.finish import FinishNode
from mllm_guidance.nodes.generate import GenerateNode
from mllm_guidance.nodes.place import PlaceNode
from mllm_guidance.nodes.reason import ReasonNode
from mllm_guidance.nodes.self_correct import SelfCorrectNode

__all__ = ["AlignNode", "FinishNode", "GenerateNode", "PlaceNode", "ReasonNode", "SelfCorrectNode"]
