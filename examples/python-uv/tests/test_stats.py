from textkit import word_stats


def test_counts() -> None:
    stats = word_stats("the cat and the hat\n\nThe end\n")
    assert stats.words == 7
    assert stats.unique == 5
    assert stats.lines == 2
    assert stats.most_common[0] == ("the", 3)


def test_empty_text() -> None:
    stats = word_stats("")
    assert (stats.words, stats.unique, stats.lines, stats.most_common) == (0, 0, 0, [])
