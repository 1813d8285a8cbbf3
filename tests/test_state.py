

# -- the growing lists are delta channels: a checkpoint stores what a step adds ---------------


def test_rounds_are_put_by_index_in_any_batching():
    from mllm_guidance.state import ImageRef, Round, put_rounds

    def rnd(i, score=None):
        return Round(index=i, layout=None, layout_source="place", seed=0, score=score,
                     image=ImageRef(path=f"round-{i}.png", sha256="0" * 64, width=8, height=8, bytes=1))

    writes = [[rnd(0)], [rnd(0, 2)], [rnd(1)], [rnd(1, 4)]]
    whole = put_rounds([], writes)
    assert [(r.index, r.score) for r in whole] == [(0, 2), (1, 4)]
    assert put_rounds(put_rounds([], writes[:1]), writes[1:]) == whole == put_rounds(put_rounds([], writes[:3]), writes[3:])
    import pytest

    with pytest.raises(ValueError, match="round 2 written before round 1"):
        put_rounds([rnd(0)], [[rnd(2)]])
