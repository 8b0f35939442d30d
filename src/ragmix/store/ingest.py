"""Ingest: load, chunk, embed and commit documents in small crash-safe transactions.

Ingest streams: documents are read from an iterator (:func:`ragmix.documents.load_paths`
reads files one by one and a BEIR ``corpus.jsonl`` row by row), looked up in the store
a window at a time, chunked, and embedded and committed ``commit_chunks`` chunks at a
time, so its memory holds one window and one commit group whatever the corpus size.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from ragmix.chunking.base import Chunker
from ragmix.encoders.base import Encoder
from ragmix.store.backend import StoreBackend
from ragmix.types import Chunk, Document, Skipped

# Chunks embedded and committed per transaction: small enough that a crash
# loses little work, large enough that fsync and batching stay cheap.
COMMIT_CHUNKS = 512
# Documents read ahead and looked up in the store with one query: enough that the
# lookups cost little, few enough (and at most WINDOW_CHARS of text) that memory stays flat.
WINDOW_DOCS = 256
WINDOW_CHARS = 8_000_000


class Progress(Protocol):
    """Receives progress of long work; the CLI draws it as bars, the library never prints."""

    def start(self, stage: str, total: int | None) -> None: ...

    def advance(self, stage: str, n: int = 1) -> None: ...


@dataclass(frozen=True)
class IndexReport:
    """What one indexing run did."""

    added: int = 0  # new documents
    updated: int = 0  # documents whose content changed
    unchanged: int = 0
    chunks: int = 0  # chunks written
    skipped: tuple[Skipped, ...] = field(default=())
    seconds: float = 0.0


@dataclass
class _Tally:
    """The counts of an :class:`IndexReport`, kept as the stream goes."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks: int = 0
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class _Work:
    """A document to embed with its chunks; ``new``: no version of it was stored."""

    doc: Document
    chunks: list[Chunk]
    new: bool


def ingest(
    items: Iterable[Document | Skipped],
    store: StoreBackend,
    chunker: Chunker,
    encoder: Callable[[], Encoder],
    progress: Progress | None = None,
    *,
    commit_chunks: int = COMMIT_CHUNKS,
) -> IndexReport:
    """Chunk, embed and store every new or changed document; skip unchanged ones.

    ``items`` is consumed once, lazily. ``encoder`` is a thunk so that a run with
    nothing to do never loads a model. Each commit (one batch of ``store``) holds
    whole documents, in input order, until it holds ``commit_chunks`` chunks, so a
    crash never leaves half a document and a re-run skips what was committed.

    A document whose content hash is stored under its id is unchanged. Of two with
    the same id, the later wins, in the later position, while the first is not yet
    committed; once it is, the later one is compared with it like any stored document.
    Progress: ``reading`` counts documents until the first commit, then ``embedding``
    counts committed chunks (its total is unknown: None).
    """
    began = time.perf_counter()
    tally = _Tally()
    committer = _Committer(store, encoder, progress, commit_chunks, tally)
    window: dict[str, Document] = {}
    chars = 0
    if progress is not None:
        progress.start("reading", None)
    for item in items:
        if progress is not None and not committer.started:
            progress.advance("reading")
        if isinstance(item, Skipped):
            tally.skipped.append(item)
            continue
        window.pop(item.doc_id, None)  # a later duplicate id wins, in the later position
        committer.discard(item.doc_id)
        window[item.doc_id] = item
        chars += len(item.text)
        if len(window) >= WINDOW_DOCS or chars >= WINDOW_CHARS:
            _settle(window, store, chunker, committer, tally)
            window, chars = {}, 0
    _settle(window, store, chunker, committer, tally)
    committer.flush()
    return IndexReport(added=tally.added, updated=tally.updated, unchanged=tally.unchanged,
                       chunks=tally.chunks, skipped=tuple(tally.skipped),
                       seconds=time.perf_counter() - began)


def _settle(window: dict[str, Document], store: StoreBackend, chunker: Chunker,
            committer: _Committer, tally: _Tally) -> None:
    """Look a window of documents up in the store; chunk and queue the new or changed ones."""
    if not window:
        return
    known = {doc_id: row.content_hash
             for doc_id, row in store.get_documents(list(window)).items()}
    todo = [doc for doc in window.values() if known.get(doc.doc_id) != doc.content_hash]
    tally.unchanged += len(window) - len(todo)
    for doc, chunks in zip(todo, chunk_documents(chunker, todo)):
        if chunks:
            committer.add(_Work(doc, chunks, new=doc.doc_id not in known))
        else:
            tally.skipped.append(Skipped(doc.source, "no text to index after chunking"))


def chunk_documents(chunker: Chunker, docs: list[Document]) -> list[list[Chunk]]:
    """Each document's chunks; a chunker with ``chunk_many`` (the semantic one, which
    embeds every document's sentences in one call) gets the whole window at once."""
    many = getattr(chunker, "chunk_many", None)
    if callable(many):
        return many([(doc.doc_id, doc.text) for doc in docs])
    return [chunker.chunk(doc.doc_id, doc.text) for doc in docs]


class _Committer:
    """Groups queued documents, in order, until a group holds ``commit_chunks`` chunks,
    then embeds the group and commits it as one batch of the store.

    :mod:`ragmix.distributed.ingest` forms the same groups, so both store the same ids.
    """

    def __init__(self, store: StoreBackend, encoder: Callable[[], Encoder],
                 progress: Progress | None, commit_chunks: int, tally: _Tally) -> None:
        self.store, self.progress, self.tally = store, progress, tally
        self.commit_chunks = commit_chunks
        self._make_encoder = encoder
        self._encoder: Encoder | None = None
        self.group: dict[str, _Work] = {}
        self.size = 0  # chunks in the group

    @property
    def started(self) -> bool:
        """Whether embedding has begun (the encoder is loaded)."""
        return self._encoder is not None

    def discard(self, doc_id: str) -> None:
        """Drop ``doc_id`` from the group, if queued: a later version replaces it."""
        work = self.group.pop(doc_id, None)
        if work is not None:
            self.size -= len(work.chunks)

    def add(self, work: _Work) -> None:
        self.group[work.doc.doc_id] = work
        self.size += len(work.chunks)
        if self.size >= self.commit_chunks:
            self.flush()

    def flush(self) -> None:
        """Embed the group gathered so far and commit it as one batch of the store."""
        if not self.group:
            return
        encoder = self._load()
        works = list(self.group.values())
        texts = [c.text for w in works for c in w.chunks]
        vectors = encoder.encode_documents(texts)  # (n, dim)
        offset = 0
        with self.store.batch() as batch:  # embedded before: the batch holds the write lock briefly
            for w in works:
                batch.put(w.doc, w.chunks, vectors[offset : offset + len(w.chunks)])
                offset += len(w.chunks)
        added = sum(w.new for w in works)
        self.tally.added += added
        self.tally.updated += len(works) - added
        self.tally.chunks += len(texts)
        self.group, self.size = {}, 0
        if self.progress is not None:
            self.progress.advance("embedding", len(texts))

    def _load(self) -> Encoder:
        if self._encoder is None:
            if self.progress is not None:  # loading a model can take seconds: say so
                self.progress.start("loading encoder", None)
            self._encoder = self._make_encoder()
            if self.progress is not None:
                self.progress.start("embedding", None)
        return self._encoder
