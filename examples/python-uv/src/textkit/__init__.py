"""Small text utilities: slugs, word statistics and line wrapping."""

from textkit.slug import slugify
from textkit.stats import WordStats, word_stats
from textkit.wrap import wrap

__all__ = ["WordStats", "slugify", "word_stats", "wrap"]
