"""Ingest: load, chunk, embed and commit documents in small crash-safe transactions."""

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

    ``encoder`` is a thunk so that a run with nothing to do never loads a model.
    Each commit (one batch of ``store``) holds whole documents, so a crash never
    leaves half a document.
    """
    began = time.perf_counter()
    skipped: list[Skipped] = []
    latest: dict[str, Document] = {}
    if progress is not None:
        progress.start("reading", None)
    for item in items:
        if progress is not None:
            progress.advance("reading")
        if isinstance(item, Skipped):
            skipped.append(item)
        else:
            latest.pop(item.doc_id, None)
            latest[item.doc_id] = item  # a later duplicate id wins, in the later position
    known = {doc_id: row.content_hash
             for doc_id, row in store.get_documents(list(latest)).items()}
    todo: dict[str, tuple[Document, list[Chunk]]] = {}
    unchanged = 0
    for doc in latest.values():
        if known.get(doc.doc_id) == doc.content_hash:
            unchanged += 1
            continue
        chunks = chunker.chunk(doc.doc_id, doc.text)
        if chunks:
            todo[doc.doc_id] = (doc, chunks)
        else:
            skipped.append(Skipped(doc.source, "no text to index after chunking"))
    added = sum(1 for doc_id in todo if doc_id not in known)
    n_chunks = sum(len(chunks) for _, chunks in todo.values())
    if todo:
        if progress is not None:  # loading a model can take seconds: say so
            progress.start("loading encoder", None)
        _embed_and_commit(list(todo.values()), store, encoder(), n_chunks, progress,
                          commit_chunks)
    return IndexReport(
        added=added,
        updated=len(todo) - added,
        unchanged=unchanged,
        chunks=n_chunks,
        skipped=tuple(skipped),
        seconds=time.perf_counter() - began,
    )


def _embed_and_commit(
    work: list[tuple[Document, list[Chunk]]],
    store: StoreBackend,
    encoder: Encoder,
    n_chunks: int,
    progress: Progress | None,
    commit_chunks: int,
) -> None:
    if progress is not None:
        progress.start("embedding", n_chunks)
    batch: list[tuple[Document, list[Chunk]]] = []
    size = 0
    for doc, chunks in work:
        batch.append((doc, chunks))
        size += len(chunks)
        if size >= commit_chunks:
            _commit(batch, store, encoder, progress)
            batch, size = [], 0
    if batch:
        _commit(batch, store, encoder, progress)


def _commit(work: list[tuple[Document, list[Chunk]]], store: StoreBackend, encoder: Encoder,
            progress: Progress | None) -> None:
    texts = [c.text for _, chunks in work for c in chunks]
    vectors = encoder.encode_documents(texts)  # (n, dim)
    offset = 0
    with store.batch() as batch:  # embedded before: the batch holds the write lock briefly
        for doc, chunks in work:
            batch.put(doc, chunks, vectors[offset : offset + len(chunks)])
            offset += len(chunks)
    if progress is not None:
        progress.advance("embedding", len(texts))
