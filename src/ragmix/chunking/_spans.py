"""Turn character spans into :class:`Chunk` values, trimmed by offset, never copied."""

from __future__ import annotations

from collections.abc import Iterable

from ragmix.types import Chunk


def trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Move ``start``/``end`` inwards past whitespace; ``start == end`` if none is left.

    >>> trim("  ab c \\n", 0, 8)
    (2, 6)
    """
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def spans_to_chunks(doc_id: str, text: str, spans: Iterable[tuple[int, int]]) -> list[Chunk]:
    """Trim each span, drop the empty ones, and number the rest 0..n-1 in order."""
    chunks: list[Chunk] = []
    for start, end in spans:
        start, end = trim(text, start, end)
        if start < end:
            chunks.append(Chunk(doc_id, len(chunks), start, end, text[start:end]))
    return chunks


def check_positive_int(name: str, value: object) -> None:
    """Raise :class:`BadInputError` unless ``value`` is an int > 0 (bools refused)."""
    from ragmix.errors import BadInputError

    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadInputError(f"{name} must be an integer > 0, got {value!r}")


def check_overlap(overlap: object, size: int) -> None:
    """Raise :class:`BadInputError` unless ``0 <= overlap < size``."""
    from ragmix.errors import BadInputError

    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise BadInputError(f"overlap must be an integer >= 0, got {overlap!r}")
    if overlap >= size:
        raise BadInputError(f"overlap must be < size, got overlap={overlap}, size={size}")
