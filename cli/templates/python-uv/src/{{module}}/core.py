"""A first module: replace it with your own code."""

from collections.abc import Iterable


def mean(values: Iterable[float]) -> float:
    """Arithmetic mean of `values`; raises `ValueError` when there are none."""
    items = list(values)
    if not items:
        raise ValueError("mean of no values")
    return sum(items) / len(items)
