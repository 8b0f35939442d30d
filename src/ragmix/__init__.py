"""ragmix: Retrieval-Augmented Generation (Lewis et al., 2020), offline-first.

>>> from ragmix import Collection, RAG                      # doctest: +SKIP
>>> col = Collection.create("my-col")                        # doctest: +SKIP
>>> col.add(["docs/"])                                       # doctest: +SKIP
>>> col.search("how are passages chunked?", k=3)             # doctest: +SKIP
>>> RAG(col, load_generator()).ask("what is ragmix?").text   # doctest: +SKIP
"""

from ragmix.errors import (
    BadInputError,
    CollectionError,
    EncoderMismatchError,
    MissingExtraError,
    RagmixError,
)
from ragmix.types import Answer, Chunk, Document, Hit, ScoredId, Skipped

__version__ = "0.1.0"


def __getattr__(name: str):
    # The collection and generation layers pull in numpy-heavy modules; load on demand.
    if name == "Collection":
        from ragmix.store import Collection

        return Collection
    if name in ("RAG", "load_generator"):
        from ragmix import generation

        return getattr(generation, name)
    if name == "load_encoder":
        from ragmix.encoders import load_encoder

        return load_encoder
    raise AttributeError(f"module 'ragmix' has no attribute {name!r}")


__all__ = [
    "RAG",
    "Answer",
    "BadInputError",
    "Chunk",
    "Collection",
    "CollectionError",
    "Document",
    "EncoderMismatchError",
    "Hit",
    "MissingExtraError",
    "RagmixError",
    "ScoredId",
    "Skipped",
    "load_encoder",
    "load_generator",
]
