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


# What each chunker calls the one size a user gives (--chunk-size, the API's chunk_size).
SIZE_OPTION = {"words": "size", "chars": "size", "recursive": "max_chars",
               "semantic": "max_tokens"}


def sized_options(name: str, *, size: int | None = None, overlap: int | None = None,
                  encoder: str | None = None, percentile: float | None = None) -> dict[str, object]:
    """make_chunker's options for a user's size, overlap and (semantic) encoder and percentile.

    >>> sized_options("recursive", size=800)
    {'max_chars': 800}
    >>> sized_options("semantic", size=128, encoder="minilm")
    {'encoder': 'minilm', 'max_tokens': 128}
    """
    options: dict[str, object] = {}
    if name == "semantic" and encoder is not None:
        options["encoder"] = encoder  # sentences embedded by the collection's own encoder
    if size is not None:
        options[SIZE_OPTION.get(name, "size")] = size
    if overlap is not None:
        if name in ("recursive", "semantic"):
            raise BadInputError(f"overlap applies to the words and chars chunkers only; leave "
                                f"it out for chunker {name!r}")
        options["overlap"] = overlap
    if percentile is not None:
        if name != "semantic":
            raise BadInputError(f"a breakpoint percentile applies to the semantic chunker "
                                f"only, not {name!r}")
        options["percentile"] = percentile
    return options


def chunker_from_settings(settings: dict[str, object]) -> Chunker:
    """Rebuild a chunker from its :meth:`Chunker.settings` (e.g. read from a manifest)."""
    options = dict(settings)
    name = options.pop("name", None)
    if name is None:
        raise BadInputError(f"chunker settings need a 'name', got {settings!r}")
    return make_chunker(str(name), **options)


__all__ = [
    "CHUNKERS",
    "SIZE_OPTION",
    "sized_options",
    "CharChunker",
    "Chunker",
    "RecursiveChunker",
    "SemanticChunker",
    "WordChunker",
    "chunker_from_settings",
    "make_chunker",
]
