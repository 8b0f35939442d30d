"""Recursive separator splitting, as LangChain's RecursiveCharacterTextSplitter does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragmix.chunking._spans import check_positive_int, spans_to_chunks
from ragmix.errors import BadInputError
from ragmix.types import Chunk

Span = tuple[int, int]


@dataclass(frozen=True, init=False)
class RecursiveChunker:
    """Splits on paragraphs, then lines, sentences and words, into chunks of <= max_chars.

    The text is split on the first separator; consecutive pieces are merged
    greedily while they fit in ``max_chars``; a piece still too long is split
    again with the next separator, and hard-cut when none is left. A separator
    stays at the end of the piece before it, so ``". "`` keeps the full stop.

    >>> chunker = RecursiveChunker(max_chars=12)
    >>> [c.text for c in chunker.chunk("d", "One two.\\n\\nThree four five.")]
    ['One two.', 'Three four', 'five.']
    """

    max_chars: int
    separators: tuple[str, ...]

    def __init__(
        self, max_chars: int = 1000, separators: Sequence[str] = ("\n\n", "\n", ". ", " ")
    ) -> None:
        check_positive_int("max_chars", max_chars)
        if isinstance(separators, str):
            raise BadInputError(
                f"separators must be a list of strings, got the string {separators!r}; "
                f"wrap it in a list"
            )
        seps = tuple(separators)
        if not all(isinstance(s, str) and s for s in seps):
            raise BadInputError(f"separators must be non-empty strings, got {list(seps)!r}")
        # Frozen: set through object.__setattr__, as dataclasses do themselves.
        object.__setattr__(self, "max_chars", max_chars)
        object.__setattr__(self, "separators", seps)

    def chunk(self, doc_id: str, text: str) -> list[Chunk]:
        return spans_to_chunks(doc_id, text, self._split(text, 0, len(text), self.separators))

    def _split(self, text: str, start: int, end: int, seps: tuple[str, ...]) -> list[Span]:
        if end - start <= self.max_chars:
            return [(start, end)]
        if not seps:
            return [(i, min(i + self.max_chars, end)) for i in range(start, end, self.max_chars)]
        pieces = _split_on(text, start, end, seps[0])
        if len(pieces) == 1:
            return self._split(text, start, end, seps[1:])
        out: list[Span] = []
        for piece_start, piece_end in _merge(pieces, self.max_chars):
            out.extend(self._split(text, piece_start, piece_end, seps[1:]))
        return out

    def settings(self) -> dict[str, object]:
        # A list, not a tuple: settings go through JSON into the collection manifest.
        seps = list(self.separators)
        return {"name": "recursive", "max_chars": self.max_chars, "separators": seps}


def _split_on(text: str, start: int, end: int, sep: str) -> list[Span]:
    """Contiguous spans covering ``text[start:end]``, each ending just after a ``sep``.

    >>> _split_on("a. b. c", 0, 7, ". ")
    [(0, 3), (3, 6), (6, 7)]
    """
    pieces: list[Span] = []
    pos = start
    while True:
        hit = text.find(sep, pos, end)
        if hit == -1:
            break
        pieces.append((pos, hit + len(sep)))
        pos = hit + len(sep)
    if pos < end:
        pieces.append((pos, end))
    return pieces


def _merge(pieces: list[Span], max_chars: int) -> list[Span]:
    """Join consecutive contiguous spans greedily while the joined span fits.

    >>> _merge([(0, 3), (3, 6), (6, 20)], 6)
    [(0, 6), (6, 20)]
    """
    merged: list[Span] = []
    cur_start, cur_end = pieces[0]
    for piece_start, piece_end in pieces[1:]:
        if piece_end - cur_start <= max_chars:
            cur_end = piece_end
        else:
            merged.append((cur_start, cur_end))
            cur_start, cur_end = piece_start, piece_end
    merged.append((cur_start, cur_end))
    return merged
