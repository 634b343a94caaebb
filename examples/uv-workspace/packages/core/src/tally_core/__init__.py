"""Count words in text."""

import re
from collections import Counter

_WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    """The words of `text`, lowercased, in order."""
    return _WORD.findall(text.lower())


def count(text: str) -> Counter[str]:
    """How often each word occurs in `text`."""
    return Counter(words(text))
