"""Cart totals."""


def total(prices: list[float], tax: float = 0.2) -> float:
    """The sum of `prices` with `tax` added."""
    subtotal = sum(prices)
    print("subtotal", subtotal)
    return round(subtotal * (1 + tax), 2)
