import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from effres_core.measure.selection import Selection, is_scored, select


def test_threshold_keeps_input_order():
    sel = select([0.2, 0.9, None, 0.6], threshold=0.5)
    assert sel.kept == [1, 3]
    assert sel.rejected == [0, 2]
    assert not sel.fallback_used


def test_best_order_and_top_n():
    scores = [0.2, 0.9, 0.6, 0.7]
    assert select(scores, order="best").kept == [1, 3, 2, 0]
    assert select(scores, top_n=2).kept == [1, 3]
    assert select(scores, top_n=2, order="best").kept == [1, 3]
    assert select(scores, threshold=0.65, top_n=5).kept == [1, 3]


def test_ties_keep_input_order():
    assert select([0.5, 0.5, 0.5], top_n=2, order="best").kept == [0, 1]


def test_unscored_never_pass():
    sel = select([None, float("nan"), float("inf"), 0.1])
    assert sel.kept == [3]
    assert is_scored(0.0) and not is_scored(None) and not is_scored(math.nan)


def test_passes_is_anded():
    sel = select([0.9, 0.8, 0.7], threshold=0.5, passes=[True, False, True])
    assert sel.kept == [0, 2]


def test_fallback_best_when_nothing_passes():
    sel = select([0.1, None, 0.3], threshold=0.5, fallback="best")
    assert sel == Selection(kept=[2], rejected=[0, 1], fallback_used=True)
    assert select([0.1, 0.3], threshold=0.5).kept == []


def test_fallback_with_nothing_scored_or_empty():
    assert select([None, None], fallback="best").kept == []
    assert select([], threshold=0.5, fallback="best") == Selection([], [], False)


@pytest.mark.parametrize("kwargs", [{"order": "worst"}, {"fallback": "all"}, {"top_n": -1}, {"passes": [True]}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        select([0.1, 0.2], **kwargs)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 1)), max_size=12), st.floats(0, 1), st.integers(0, 5),
       st.sampled_from(["input", "best"]), st.sampled_from(["none", "best"]))
def test_partition_and_rules(scores, threshold, top_n, order, fallback):
    sel = select(scores, threshold=threshold, top_n=top_n, order=order, fallback=fallback)
    assert sorted(sel.kept + sel.rejected) == list(range(len(scores)))
    if top_n:
        assert len(sel.kept) <= top_n
    if not sel.fallback_used:
        assert all(scores[i] is not None and scores[i] >= threshold for i in sel.kept)
        # every rejected scored item that passes the threshold lost only to the top-N cut
        best_rejected = [scores[i] for i in sel.rejected if scores[i] is not None and scores[i] >= threshold]
        if best_rejected:
            assert top_n and len(sel.kept) == top_n and min(scores[i] for i in sel.kept) >= max(best_rejected)
    else:
        assert len(sel.kept) == 1 and scores[sel.kept[0]] == max(s for s in scores if s is not None)
    if order == "input":
        assert sel.kept == sorted(sel.kept)
