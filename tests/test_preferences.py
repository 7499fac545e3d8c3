import numpy as np
import pytest

from moabench.core.preferences import (
    PreferenceError,
    PreferenceNormalizedWarning,
    simplex_lattice,
    validate_preference,
)


@pytest.mark.parametrize(
    ("preference", "message"),
    [
        ([0.5, 0.5, 0.0], "has 3 entries but the task has 2"),
        ([-0.2, 1.2], "negative"),
        ([0.0, 0.0], "all zeros"),
        ([float("nan"), 1.0], "non-finite"),
        (["a", "b"], "not a vector of numbers"),
        ([], "non-empty"),
    ],
)
def test_invalid_preferences_are_rejected_with_the_reason(preference, message):
    with pytest.raises(PreferenceError, match=message):
        validate_preference(preference, 2)


def test_a_preference_not_summing_to_one_is_normalised_with_a_notice():
    with pytest.warns(PreferenceNormalizedWarning, match="sums to 4"):
        w = validate_preference([1, 3], 2)
    assert w == pytest.approx([0.25, 0.75])


def test_a_valid_preference_passes_unchanged():
    assert validate_preference([0.3, 0.7], 2).tolist() == [0.3, 0.7]


def test_standard_lattices():
    two = simplex_lattice(2)
    assert two.shape == (11, 2)
    assert two[:, 0] == pytest.approx(np.linspace(0, 1, 11))
    three = simplex_lattice(3)
    assert three.shape == (15, 3)
    assert np.allclose(three.sum(axis=1), 1.0) and np.all(three >= 0)
    assert len({tuple(row) for row in three}) == 15
    assert simplex_lattice(2, 4).shape == (5, 2)
