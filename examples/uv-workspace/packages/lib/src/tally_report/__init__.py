"""A plain-text report of the most frequent words."""

from tally_core import count


def top(text: str, n: int = 3) -> list[tuple[str, int]]:
    """The `n` most frequent words, most frequent first, ties alphabetical."""
    counts = count(text)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:n]


def report(text: str, n: int = 3) -> str:
    """One `word: count` line per frequent word."""
    return "\n".join(f"{word}: {times}" for word, times in top(text, n))
