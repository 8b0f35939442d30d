"""Copy a collection between locations and backends (a directory <-> PostgreSQL).

The stored embeddings travel as they are, bit for bit: nothing is re-embedded, so
the copy finds what the source finds. Documents are written in batches of whole
documents, as ingest writes them, and an interrupted copy resumes when run again:
documents already in the target with the same content hash are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ragmix.errors import CollectionError
from ragmix.store.backend import ChunkRow, StoreBackend
from ragmix.store.collection import Collection
from ragmix.store.home import home_for
from ragmix.store.ingest import COMMIT_CHUNKS, Progress
from ragmix.store.manifest import Manifest
from ragmix.types import Chunk, Document

_READ_CHUNKS = 2048  # chunk rows read from the source per round trip


def copy_collection(source: str | Path, target: str | Path, *, index: str | None = None,
                    index_params: dict[str, Any] | None = None,
                    progress: Progress | None = None,
                    commit_chunks: int = COMMIT_CHUNKS) -> int:
    """Copy the collection at ``source`` to ``target``; returns the chunks written.

    ``target`` is created with the source's encoder, chunker and BM25 settings and
    ``index`` / ``index_params`` (default: the target backend's default index), or,
    if it holds a collection already, must have the source's encoder.
    """
    with Collection.open(source) as src:
        target_home = home_for(target)
        if target_home.exists():
            dst = Collection.open(target)
            if (dst.manifest.encoder, dst.manifest.dim) != (src.manifest.encoder,
                                                            src.manifest.dim):
                dst.close()
                raise CollectionError(
                    f"{str(target)!r} holds a collection built with {dst.manifest.encoder!r}, "
                    f"the source with {src.manifest.encoder!r}; copy into a new location")
        else:
            settings = target_home.index_settings(
                index or target_home.default_index, dict(index_params or {}), src.manifest.dim)
            manifest = Manifest(encoder=src.manifest.encoder, dim=src.manifest.dim,
                                chunker=src.manifest.chunker, index=settings,
                                bm25=src.manifest.bm25)
            dst = Collection(target_home, manifest, None, backend=target_home.create(manifest))
        with dst, dst.home.write_lock():
            written = _copy_documents(src.backend, dst.backend, progress, commit_chunks)
            if progress is not None:
                progress.start("updating indexes", None)
            dst.backend.refresh()
    return written


def _copy_documents(src: StoreBackend, dst: StoreBackend, progress: Progress | None,
                    commit_chunks: int) -> int:
    have = {d.doc_id: d.content_hash for d in dst.documents()}
    todo = {d.doc_id: d for d in src.documents() if have.get(d.doc_id) != d.content_hash}
    if progress is not None:
        progress.start("copying", sum(d.n_chunks for d in todo.values()))
    batch: list[tuple[Document, list[Chunk], np.ndarray]] = []
    size = written = 0
    wanted = {doc_id: row.n_chunks for doc_id, row in todo.items()}
    for doc_id, rows, vectors in _documents_with_chunks(src, wanted):
        row = todo[doc_id]
        doc = Document(doc_id, _text_of(rows), source=row.source, title=row.title,
                       mtime=row.mtime, content_hash=row.content_hash)
        chunks = [Chunk(doc_id, i, r.start, r.end, r.text) for i, r in enumerate(rows)]
        batch.append((doc, chunks, vectors))
        size += len(chunks)
        if size >= commit_chunks:
            written += _commit(dst, batch, progress)
            batch, size = [], 0
    if batch:
        written += _commit(dst, batch, progress)
    return written


def _commit(dst: StoreBackend, batch: list[tuple[Document, list[Chunk], np.ndarray]],
            progress: Progress | None) -> int:
    with dst.batch() as writes:
        for doc, chunks, vectors in batch:
            writes.put(doc, chunks, vectors)
    n = sum(len(chunks) for _, chunks, _ in batch)
    if progress is not None:
        progress.advance("copying", n)
    return n


def _documents_with_chunks(src: StoreBackend, wanted: dict[str, int]
                           ) -> Iterator[tuple[str, list[ChunkRow], np.ndarray]]:
    """(doc_id, its chunk rows in order, their (n, dim) embeddings) for each wanted document
    (doc_id -> its number of chunks), each as soon as all its chunks are read.

    Chunk ids ascend in chunk order within a document, so reading by id groups them,
    and memory holds only the documents a page cuts through.
    """
    rows_of: dict[str, list[ChunkRow]] = {}
    vectors_of: dict[str, list[np.ndarray]] = {}
    ids = src.chunk_ids()
    for start in range(0, len(ids), _READ_CHUNKS):
        page = ids[start:start + _READ_CHUNKS].tolist()
        rows = src.chunk_rows(page)
        keep = [i for i in page if i in rows and rows[i].doc_id in wanted]
        vectors = src.embeddings(keep)  # (len(keep), dim)
        for chunk_id, vector in zip(keep, vectors):
            doc_id = rows[chunk_id].doc_id
            rows_of.setdefault(doc_id, []).append(rows[chunk_id])
            vectors_of.setdefault(doc_id, []).append(vector)
            if len(rows_of[doc_id]) == wanted[doc_id]:
                yield doc_id, rows_of.pop(doc_id), np.stack(vectors_of.pop(doc_id))
    for doc_id, rows in rows_of.items():  # a count changed by a write since it was read
        yield doc_id, rows, np.stack(vectors_of[doc_id])


def _text_of(rows: list[ChunkRow]) -> str:
    """The document text as far as its chunks tell: each chunk at its offsets, gaps blank.

    >>> from ragmix.store.backend import ChunkRow
    >>> _text_of([ChunkRow(1, "d", "ab", 0, 2, "", ""), ChunkRow(2, "d", "cd", 3, 5, "", "")])
    'ab cd'
    """
    text = [" "] * max(r.end for r in rows)
    for r in rows:
        text[r.start:r.end] = r.text
    return "".join(text)
