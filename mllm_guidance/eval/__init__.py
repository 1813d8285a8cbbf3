"""Benchmarks: datasets, the resumable runner, scorers and result tables (thesis Tables 6.2, 6.3).

Every scorer reproduces a named reference (T2I-CompBench's MLLM judge, CLIP similarity and
BLIP-VQA; Hessel et al.'s CLIPScore; Attend-and-Excite's BLIP-CLIP), says so in its module, in each
record and in its column header, and every table states the generator, guide MLLM, judge, judge
scale and template set it comes from. The judge's scale is always stated because the thesis's
Table 6.3 is not a mean of score/5 over 300 images (its values sit on a 1/1200 grid; see
``tables`` and docs/evaluation.md).
"""
