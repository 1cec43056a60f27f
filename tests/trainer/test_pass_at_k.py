"""The unbiased pass@k estimator."""

from math import comb

import pytest

from verifarm.trainer.evaluate import pass_at_k


@pytest.mark.parametrize("n,c,k", [(10, 0, 1), (10, 3, 1), (10, 3, 5), (16, 1, 16), (20, 7, 4), (8, 8, 2)])
def test_matches_the_combinatorial_formula(n, c, k):
    expected = 1.0 - comb(n - c, k) / comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_1_is_the_pass_rate():
    assert pass_at_k(16, 4, 1) == pytest.approx(0.25)


@pytest.mark.parametrize("n,c,k", [(4, 5, 1), (4, 2, 0), (4, 2, 5), (4, -1, 1)])
def test_invalid_counts_are_refused(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
