"""A tiny shop: prices, totals and (badly) installing plugins."""

__version__ = "0.1.0"
