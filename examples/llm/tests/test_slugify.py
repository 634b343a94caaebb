"""Tests of the generated module: they pin the behaviour the spec asks for."""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from slugify import slugify  # noqa: E402


class SlugifyTest(unittest.TestCase):
    def test_basic(self) -> None:
        self.assertEqual(slugify("Hello, World!"), "hello-world")

    def test_accents(self) -> None:
        self.assertEqual(slugify("Crème brûlée"), "creme-brulee")

    def test_separator(self) -> None:
        self.assertEqual(slugify("a b  c", separator="_"), "a_b_c")

    def test_edges(self) -> None:
        self.assertEqual(slugify("  --x--  "), "x")

    def test_empty_separator(self) -> None:
        with self.assertRaises(ValueError):
            slugify("x", separator="")


if __name__ == "__main__":
    unittest.main()
