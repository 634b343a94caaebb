import pytest
from hypothesis import given
from hypothesis import strategies as st

from textkit import wrap


def test_wraps_at_word_boundaries() -> None:
    assert wrap("the quick brown fox jumps", 10) == ["the quick", "brown fox", "jumps"]


def test_long_words_are_cut() -> None:
    assert wrap("abcdefghij xy", 4) == ["abcd", "efgh", "ij", "xy"]


def test_width_must_be_positive() -> None:
    with pytest.raises(ValueError):
        wrap("x", 0)


words = st.text(alphabet="abcdefghij", min_size=1, max_size=15)


@given(st.lists(words, max_size=30), st.integers(min_value=1, max_value=20))
def test_lines_fit_and_keep_every_character(ws: list[str], width: int) -> None:
    lines = wrap(" ".join(ws), width)
    assert all(1 <= len(line) <= width for line in lines)
    assert "".join(lines).replace(" ", "") == "".join(ws)
