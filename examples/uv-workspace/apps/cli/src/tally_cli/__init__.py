"""`tally FILE`: print the most frequent words of a file."""

import sys

from tally_report import report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: tally FILE", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        print(report(f.read()))
    return 0
