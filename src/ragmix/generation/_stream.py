"""Turn a growing list of token ids into text pieces for streaming."""

from __future__ import annotations

from collections.abc import Callable, Sequence

# What a byte-level tokenizer decodes to while a multi-byte character is
# still split across tokens: hold it back until the rest arrives.
_PARTIAL = "\ufffd"


class TextStream:
    """Incremental detokeniser: the pieces it returns concatenate to :attr:`text`.

    Decoding token by token breaks multi-byte characters and word-piece
    joins, so each step decodes the whole sequence and returns only the new
    suffix. Leading and trailing whitespace is held back, so the joined pieces
    equal the stripped answer.

    >>> vocab = {0: "Hel", 1: "lo", 2: "wor", 3: "ld", 4: " "}
    >>> stream = TextStream(lambda ids: "".join(vocab[i] for i in ids))
    >>> [stream.push(i) for i in (0, 1, 4, 2, 3, 4)] + [stream.finish()]
    ['Hel', 'lo', '', ' wor', 'ld', '', '']
    >>> stream.text
    'Hello world'
    """

    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._emitted = ""

    @property
    def text(self) -> str:
        """Everything returned so far, joined."""
        return self._emitted

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes ("" while it is held back)."""
        self._ids.append(token_id)
        visible = self._decode(self._ids).strip().rstrip(_PARTIAL).rstrip()
        return self._emit(visible)

    def finish(self) -> str:
        """Return what is still held back, once no more tokens will come."""
        return self._emit(self._decode(self._ids).strip())

    def _emit(self, visible: str) -> str:
        if not visible.startswith(self._emitted):
            # A tokenizer whose decoding is not prefix-stable (rare): what was
            # sent cannot be taken back, so carry on from the same length.
            visible = self._emitted + visible[len(self._emitted) :]
        piece = visible[len(self._emitted) :]
        self._emitted = visible
        return piece
