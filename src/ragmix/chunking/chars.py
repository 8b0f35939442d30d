"""Character-window chunking that avoids cutting words where it can."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ragmix.chunking._spans import check_overlap, check_positive_int, spans_to_chunks
from ragmix.types import Chunk

_SPACE = re.compile(r"\s+")
_NON_SPACE = re.compile(r"\S")


@dataclass(frozen=True)
class CharChunker:
    """Cuts text into chunks of at most ``size`` characters, about ``overlap`` shared.

    A window that would end mid-word is shortened to the last whitespace inside
    it; a word longer than ``size`` is hard-cut. With ``overlap > 0`` the next
    window starts ``overlap`` characters before the previous end, moved forward
    to the next word start, so overlaps are approximate, not exact.

    >>> [c.text for c in CharChunker(size=8, overlap=0).chunk("d1", "alpha beta gamma")]
    ['alpha', 'beta', 'gamma']
    """

    size: int = 1000
    overlap: int = 200

    def __post_init__(self) -> None:
        check_positive_int("size", self.size)
        check_overlap(self.overlap, self.size)

    def chunk(self, doc_id: str, text: str) -> list[Chunk]:
        return spans_to_chunks(doc_id, text, self._spans(text))

    def _spans(self, text: str) -> list[tuple[int, int]]:
        n = len(text)
        spans: list[tuple[int, int]] = []
        pos = 0
        while True:
            first = _NON_SPACE.search(text, pos)
            if first is None:
                return spans
            start = first.start()
            end = min(start + self.size, n)
            hard_cut = False
            if end < n and not text[end].isspace() and not text[end - 1].isspace():
                cut = _last_space(text, start, end)
                if cut > start:
                    end = cut
                else:
                    hard_cut = True  # one word longer than size
            spans.append((start, end))
            if end >= n:
                return spans
            if self.overlap == 0:
                pos = end
                continue
            # Never step backwards (a shortened window may be shorter than overlap).
            pos = max(end - self.overlap, start + 1)
            if not hard_cut and not text[pos - 1].isspace():
                # Start the overlap at a word; `end` sits on whitespace, so this
                # jumps at most to the first word after it and leaves no gap.
                space = _SPACE.search(text, pos)
                pos = space.end() if space else n
        return spans

    def settings(self) -> dict[str, object]:
        return {"name": "chars", "size": self.size, "overlap": self.overlap}


def _last_space(text: str, start: int, end: int) -> int:
    """Index of the last whitespace character in ``text[start:end]``, or -1."""
    for i in range(end - 1, start - 1, -1):
        if text[i].isspace():
            return i
    return -1
