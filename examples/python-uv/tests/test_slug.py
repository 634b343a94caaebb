import pytest
from hypothesis import given
from hypothesis import strategies as st

from textkit import slugify


def test_basic() -> None:
    assert slugify("Hello, World!") == "hello-world"


def test_accents_are_dropped() -> None:
    assert slugify("Crème brûlée à la carte") == "creme-brulee-a-la-carte"


def test_custom_separator() -> None:
    assert slugify("a b  c", separator="_") == "a_b_c"


def test_max_length_cuts_at_a_separator() -> None:
    assert slugify("the quick brown fox", max_length=12) == "the-quick"


def test_empty_separator_is_rejected() -> None:
    with pytest.raises(ValueError):
        slugify("x", separator="")


@given(st.text())
def test_slug_is_url_safe(text: str) -> None:
    slug = slugify(text)
    assert all(c.isascii() and (c.isalnum() or c == "-") for c in slug)
    assert not slug.startswith("-")
    assert not slug.endswith("-")
    assert slugify(slug) == slug
