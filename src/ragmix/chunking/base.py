"""The chunker interface: cut one document's text into passages with offsets."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ragmix.types import Chunk


@runtime_checkable
class Chunker(Protocol):
    """Splits a document into chunks; ``chunk.text == text[chunk.start:chunk.end]``."""

    def chunk(self, doc_id: str, text: str) -> list[Chunk]: ...

    def settings(self) -> dict[str, object]:
        """JSON-serialisable settings, recorded in the collection manifest."""
        ...
