import math

import numpy as np
import pytest

from effres_core.evaluation.metrics import mean_abs_error, nanmean, pra, rankdata, srcc


def test_rankdata_averages_ties():
    assert rankdata([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert rankdata([3, 3, 3]).tolist() == [2.0, 2.0, 2.0]
    assert rankdata([]).tolist() == []


def test_srcc_hand_computed():
    # Ranks (1,2,3,4) vs (1,3,2,4): sum d^2 = 2, rho = 1 - 6*2 / (4*15) = 0.8.
    assert srcc([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert srcc([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert srcc([0.1, 0.2, 0.9], [1, 5, 100]) == pytest.approx(1.0)
    # With a tie: ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4): Pearson of the ranks = 4.5 / sqrt(4.5 * 5).
    assert srcc([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(3 / math.sqrt(10))


def test_srcc_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.integers(0, 5, size=12).astype(float)
        b = rng.normal(size=12).round(1)
        expected = stats.spearmanr(a, b).statistic
        got = srcc(a, b)
        if np.isnan(expected):
            assert np.isnan(got)
        else:
            assert got == pytest.approx(expected, abs=1e-12)


def test_srcc_constant_is_nan():
    assert math.isnan(srcc([1, 1, 1], [1, 2, 3]))


def test_pra_hand_computed():
    # pairs (0,1) right, (0,2) right, (1,2) wrong.
    assert pra([0.1, 0.4, 0.5], [1, 3, 2]) == pytest.approx(2 / 3)
    # a tie in the prediction counts half: (0,1) tie, (0,2) and (1,2) right.
    assert pra([1, 1, 2], [1, 2, 3]) == pytest.approx(2.5 / 3)
    # pairs with equal truth are not counted: only (0,2) and (1,2), both wrong.
    assert pra([3, 2, 1], [1, 1, 2]) == 0.0
    assert pra([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0


def test_pra_all_truths_equal_is_nan():
    assert math.isnan(pra([1, 2, 3], [5, 5, 5]))


def test_mae_and_nanmean():
    assert mean_abs_error([0.5, 1.0], [0.25, 1.0]) == pytest.approx(0.125)
    assert nanmean([1.0, float("nan"), 3.0]) == 2.0
    assert math.isnan(nanmean([]))


@pytest.mark.parametrize("fn", [srcc, pra, mean_abs_error])
def test_bad_input(fn):
    with pytest.raises(ValueError, match="differ in length"):
        fn([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        fn([1, float("nan"), 3], [1, 2, 3])
    with pytest.raises(ValueError, match="one-dimensional"):
        fn([[1, 2], [3, 4]], [[1, 2], [3, 4]])
