"""Turn arbitrary text into URL-friendly slugs."""

import re
import unicodedata

_NON_WORD = re.compile(r"[^a-z0-9]+")


def slugify(text: str, separator: str = "-", max_length: int | None = None) -> str:
    """Lowercase ASCII slug of `text`: accents dropped, runs of other characters joined by
    `separator`, no separator at either end, cut at a separator to at most `max_length`."""
    if not separator:
        raise ValueError("separator must not be empty")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = _NON_WORD.sub(separator, ascii_text.lower()).strip(separator)
    if max_length is not None and len(slug) > max_length:
        cut = slug[:max_length]
        boundary = cut.rfind(separator)
        slug = (cut[:boundary] if boundary > 0 else cut).strip(separator)
    return slug
