from tally_core import count, words


def test_words_are_lowercased_and_split_on_punctuation():
    assert words("Hello, hello WORLD!") == ["hello", "hello", "world"]


def test_count_tallies_each_word():
    assert count("a b a")["a"] == 2
    assert count("") == {}
