"""Word statistics of a text."""

import re
from collections import Counter
from dataclasses import dataclass

_WORD = re.compile(r"[\w']+")


@dataclass(frozen=True)
class WordStats:
    """Counts for one text."""

    words: int
    unique: int
    lines: int
    most_common: list[tuple[str, int]]


def word_stats(text: str, top: int = 3) -> WordStats:
    """Count words (case-insensitive), distinct words and non-empty lines of `text`."""
    if top < 0:
        raise ValueError("top must not be negative")
    words = [word.lower() for word in _WORD.findall(text)]
    counts = Counter(words)
    lines = sum(1 for line in text.splitlines() if line.strip())
    return WordStats(
        words=len(words),
        unique=len(counts),
        lines=lines,
        most_common=counts.most_common(top),
    )
