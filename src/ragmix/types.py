"""Frozen value types passed between ragmix components."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    """One source document, as loaded, before chunking.

    ``doc_id`` is the collection-wide key: the resolved file path for a file,
    the ``_id`` field for a row of a BEIR ``corpus.jsonl``.
    """

    doc_id: str
    text: str
    source: str
    title: str = ""
    mtime: float = 0.0
    content_hash: str = ""


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, with the reason shown to the user."""

    source: str
    reason: str


@dataclass(frozen=True)
class Chunk:
    """A passage cut from a document; ``text == document.text[start:end]``."""

    doc_id: str
    index: int  # position of the chunk within its document
    start: int  # character offset into Document.text
    end: int
    text: str


@dataclass(frozen=True)
class ScoredId:
    """A retriever's raw result: a chunk id and its score (higher is better)."""

    chunk_id: int
    score: float


@dataclass(frozen=True)
class Hit:
    """A retrieved passage with its score and retriever probability p(z|x).

    ``prob`` is softmax(score) over the returned top-k, as in Lewis et al. (2020).
    """

    chunk_id: int
    doc_id: str
    text: str
    score: float
    prob: float
    rank: int  # 1-based
    title: str = ""
    source: str = ""
    start: int = 0
    end: int = 0


@dataclass(frozen=True)
class Answer:
    """A generated answer, the passages it was given, and the ones it cited."""

    question: str
    text: str
    hits: tuple[Hit, ...]
    cited: tuple[int, ...] = field(default=())  # 1-based passage numbers found in text

    @property
    def sources(self) -> tuple[Hit, ...]:
        """The cited hits, in citation order; all hits if the answer cites none."""
        if not self.cited:
            return self.hits
        return tuple(self.hits[n - 1] for n in self.cited if 0 < n <= len(self.hits))
