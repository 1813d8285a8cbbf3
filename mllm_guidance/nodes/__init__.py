"""The graph's nodes: begin, place, self_correct, generate, reason, compare, align, finish; one module each.

Each node is async and small: the four MLLM nodes share one skeleton (``ask.ModelNode``), called
with the state and ``Runtime[Context]`` and reading the run's ``GuidanceConfig`` from the context
(one compiled graph serves every config); every node
returns only the state fields it changes (or, for the reduced lists, adds to).
"""

from mllm_guidance.nodes.align import AlignNode
from mllm_guidance.nodes.begin import begin
from mllm_guidance.nodes.compare import CompareNode
from mllm_guidance.nodes.finish import FinishNode
from mllm_guidance.nodes.generate import GenerateNode
from mllm_guidance.nodes.place import PlaceNode
from mllm_guidance.nodes.reason import ReasonNode
from mllm_guidance.nodes.self_correct import SelfCorrectNode

__all__ = ["AlignNode", "CompareNode", "FinishNode", "GenerateNode", "PlaceNode", "ReasonNode", "SelfCorrectNode", "begin"]
