"""Greedy line wrapping that never splits a word shorter than the width."""


def wrap(text: str, width: int) -> list[str]:
    """Break `text` into lines of at most `width` characters; words longer than `width` are
    cut into pieces of exactly `width`."""
    if width < 1:
        raise ValueError("width must be at least 1")
    lines: list[str] = []
    current = ""
    for word in text.split():
        while len(word) > width:
            if current:
                lines.append(current)
                current = ""
            lines.append(word[:width])
            word = word[width:]
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= width:
            current = f"{current} {word}"
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines
