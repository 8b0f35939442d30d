"""Chunkers: cut a document's text into passages with character offsets.

>>> chunker = make_chunker("words", size=100)
>>> chunker_from_settings(chunker.settings()) == chunker
True
"""

from __future__ import annotations

import dataclasses

from ragmix.chunking.base import Chunker
from ragmix.chunking.chars import CharChunker
from ragmix.chunking.recursive import RecursiveChunker
from ragmix.chunking.semantic import SemanticChunker
from ragmix.chunking.words import WordChunker
from ragmix.errors import BadInputError

CHUNKERS: dict[str, type] = {
    "words": WordChunker,
    "chars": CharChunker,
    "recursive": RecursiveChunker,
    "semantic": SemanticChunker,  # loads its encoder on the first document, not here
}


def make_chunker(name: str, **options: object) -> Chunker:
    """Build the chunker registered as ``name`` with keyword ``options``.

    >>> make_chunker("chars", size=500, overlap=50).settings()
    {'name': 'chars', 'size': 500, 'overlap': 50}
    """
    try:
        cls = CHUNKERS[name]
    except (KeyError, TypeError):
        raise BadInputError(
            f"unknown chunker {name!r}; choose one of: {', '.join(CHUNKERS)}"
        ) from None
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise BadInputError(
            f"chunker {name!r} got unknown option(s) {', '.join(unknown)}; "
            f"it takes: {', '.join(allowed)}"
        )
    return cls(**options)


def chunker_from_settings(settings: dict[str, object]) -> Chunker:
    """Rebuild a chunker from its :meth:`Chunker.settings` (e.g. read from a manifest)."""
    options = dict(settings)
    name = options.pop("name", None)
    if name is None:
        raise BadInputError(f"chunker settings need a 'name', got {settings!r}")
    return make_chunker(str(name), **options)


__all__ = [
    "CHUNKERS",
    "CharChunker",
    "Chunker",
    "RecursiveChunker",
    "SemanticChunker",
    "WordChunker",
    "chunker_from_settings",
    "make_chunker",
]
