from tally_report import report, top


def test_top_orders_by_count_then_word():
    assert top("b a b c a b") == [("b", 3), ("a", 2), ("c", 1)]


def test_report_has_one_line_per_word():
    assert report("x y x", n=2) == "x: 2\ny: 1"
