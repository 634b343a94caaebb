import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from {{module}} import mean


def test_mean() -> None:
    assert mean([1.0, 2.0, 3.0]) == 2.0


def test_mean_of_nothing() -> None:
    with pytest.raises(ValueError):
        mean([])


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1))
def test_mean_is_between_min_and_max(values: list[float]) -> None:
    m = mean(values)
    assert min(values) <= m or math.isclose(m, min(values), abs_tol=1e-6)
    assert m <= max(values) or math.isclose(m, max(values), abs_tol=1e-6)
