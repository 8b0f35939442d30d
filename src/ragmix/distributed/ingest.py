"""Distributed ingest: chunk here, embed on a pool of Ray actors, commit here in batches.

The driver (this process) reads, deduplicates and chunks the documents exactly as
:func:`ragmix.store.ingest.ingest` does and skips those already stored with the
same content hash. Ray Data sends the chunk texts to ``concurrency`` embedding
actors (``map_batches`` with a callable class on an ``ActorPoolStrategy``), each
loading the encoder once.
Vectors stream back in order and whole documents are committed through the store's
``backend.batch()``, ``commit_chunks`` chunks at a time in the same groups as a local
ingest, so the stored chunk ids, embeddings and generations are the same, and a
crash loses at most the batch in flight: run it again and committed documents are
skipped by their content hash.

Example (a local cluster; ``address="auto"`` joins the one running on this machine)::

    from ragmix.distributed import ingest_with_ray
    from ragmix.store import Collection

    with Collection.open_or_create("my-col") as col:
        report = ingest_with_ray(col, ["docs/"], concurrency=2)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmix._extras import require
from ragmix.chunking.base import Chunker
from ragmix.distributed.cluster import connect, ray_module
from ragmix.encoders.base import Encoder
from ragmix.errors import BadInputError, EncoderMismatchError
from ragmix.store.ingest import COMMIT_CHUNKS, IndexReport, Progress
from ragmix.types import Chunk, Document, Skipped

if TYPE_CHECKING:
    from ragmix.store.backend import StoreBackend
    from ragmix.store.collection import Collection

# Chunk texts per Ray Data block and per encoder call: enough to keep an encoder busy,
# few enough that vectors come back (and commits happen) every few seconds.
BATCH_SIZE = 256


class EmbedBatch:
    """The body of one embedding actor: ``factory()`` once, then one call per batch of texts."""

    def __init__(self, factory: Callable[[], Encoder], name: str, dim: int,
                 batch_size: int) -> None:
        self.encoder = factory()
        if self.encoder.name != name or self.encoder.dim != dim:
            raise EncoderMismatchError(
                f"the embedding actors built encoder {self.encoder.name!r} (dim "
                f"{self.encoder.dim}), the collection was built with {name!r} (dim {dim}); "
                "give an encoder_factory that builds the collection's encoder")
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = self.encoder.encode_documents(texts, batch_size=self.batch_size)  # (b, dim)
        return {"row": batch["row"], "vector": np.asarray(vectors, dtype=np.float32)}


@dataclass
class _Plan:
    """What a run must embed: new or changed documents with their chunks, in input order."""

    todo: list[tuple[Document, list[Chunk]]] = field(default_factory=list)
    added: int = 0
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def n_chunks(self) -> int:
        return sum(len(chunks) for _, chunks in self.todo)


def _plan(items: Iterable[Document | Skipped], backend: StoreBackend, chunker: Chunker,
          progress: Progress | None) -> _Plan:
    """The documents to embed, decided as :func:`ragmix.store.ingest.ingest` decides them."""
    plan = _Plan()
    latest: dict[str, Document] = {}
    if progress is not None:
        progress.start("reading", None)
    for item in items:
        if progress is not None:
            progress.advance("reading")
        if isinstance(item, Skipped):
            plan.skipped.append(item)
        else:
            latest.pop(item.doc_id, None)
            latest[item.doc_id] = item  # a later duplicate id wins, in the later position
    known = {doc_id: row.content_hash
             for doc_id, row in backend.get_documents(list(latest)).items()}
    for doc in latest.values():
        if known.get(doc.doc_id) == doc.content_hash:
            plan.unchanged += 1
            continue
        chunks = chunker.chunk(doc.doc_id, doc.text)
        if chunks:
            plan.todo.append((doc, chunks))
            plan.added += doc.doc_id not in known
        else:
            plan.skipped.append(Skipped(doc.source, "no text to index after chunking"))
    return plan


def _dataset(ray_data: Any, texts: Sequence[str], batch_size: int) -> Any:
    """The chunk texts as Ray Data blocks of ``batch_size`` rows: columns row, text."""
    pa = require("pyarrow", "ray")
    blocks = [pa.table({"row": np.arange(start, min(start + batch_size, len(texts))),
                        "text": list(texts[start : start + batch_size])})
              for start in range(0, len(texts), batch_size)]
    return ray_data.from_arrow(blocks)


class _Committer:
    """Collects vectors as they stream back and commits whole documents, in input order.

    The groups are those of the local ingest: documents in order until a group holds
    ``commit_chunks`` chunks, so chunk ids come out the same.
    """

    def __init__(self, plan: _Plan, backend: StoreBackend, dim: int, commit_chunks: int,
                 progress: Progress | None) -> None:
        self.todo, self.backend, self.progress = plan.todo, backend, progress
        self.commit_chunks = commit_chunks
        sizes = np.array([len(chunks) for _, chunks in plan.todo], dtype=np.int64)  # (docs,)
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # (docs,) first row of each
        self.doc_of_row = np.repeat(np.arange(len(sizes)), sizes)  # (rows,)
        self.missing = sizes.copy()  # (docs,) rows not yet embedded
        self.vectors: dict[int, np.ndarray] = {}
        self.dim = dim
        self.next_doc = 0  # first document not yet in a group
        self.group: list[int] = []
        self.group_chunks = 0

    def receive(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Vectors (b, dim) for global chunk rows (b,); commits every group now complete."""
        for doc in np.unique(self.doc_of_row[rows]):
            mine = self.doc_of_row[rows] == doc  # (b,)
            buffer = self.vectors.get(int(doc))
            if buffer is None:
                buffer = np.empty((len(self.todo[doc][1]), self.dim), dtype=np.float32)
                self.vectors[int(doc)] = buffer
            buffer[rows[mine] - self.starts[doc]] = vectors[mine]
            self.missing[doc] -= int(mine.sum())
        while self.next_doc < len(self.todo) and self.missing[self.next_doc] == 0:
            self.group.append(self.next_doc)
            self.group_chunks += len(self.todo[self.next_doc][1])
            self.next_doc += 1
            if self.group_chunks >= self.commit_chunks:
                self.flush()

    def flush(self) -> None:
        """Commit the group gathered so far as one batch of the store."""
        if not self.group:
            return
        with self.backend.batch() as batch:
            for doc in self.group:
                document, chunks = self.todo[doc]
                batch.put(document, chunks, self.vectors.pop(doc))
        if self.progress is not None:
            self.progress.advance("embedding", self.group_chunks)
        self.group, self.group_chunks = [], 0


def _embed_and_commit(plan: _Plan, collection: Collection, factory: Callable[[], Encoder], *,
                      concurrency: int, batch_size: int, num_cpus: float, commit_chunks: int,
                      progress: Progress | None) -> None:
    ray_data = require("ray.data", "ray")
    texts = [c.text for _, chunks in plan.todo for c in chunks]
    committer = _Committer(plan, collection.backend, collection.manifest.dim, commit_chunks,
                           progress)
    context = ray_data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    # In order, so documents complete (and commit) one after another and little waits.
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False  # the library never prints; `progress` reports
    try:
        embedded = _dataset(ray_data, texts, batch_size).map_batches(
            EmbedBatch, batch_size=batch_size, batch_format="numpy", num_cpus=num_cpus,
            compute=ray_data.ActorPoolStrategy(size=concurrency), fn_constructor_kwargs={
                "factory": factory, "name": collection.manifest.encoder,
                "dim": collection.manifest.dim, "batch_size": batch_size})
        if progress is not None:
            progress.start("embedding", len(texts))
        for out in embedded.iter_batches(batch_size=None, batch_format="numpy"):
            committer.receive(np.asarray(out["row"], dtype=np.int64),
                              np.asarray(out["vector"], dtype=np.float32))
        committer.flush()
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved


def ingest_documents_with_ray(
    collection: Collection, documents: Iterable[Document | Skipped], *, address: str | None = None,
    concurrency: int = 2, batch_size: int = BATCH_SIZE, num_cpus: float = 1.0,
    commit_chunks: int = COMMIT_CHUNKS, encoder_factory: Callable[[], Encoder] | None = None,
    dtype: str = "float32", progress: Progress | None = None,
) -> IndexReport:
    """:meth:`Collection.add_documents`, with the embedding done by Ray actors.

    ``concurrency`` actors each reserve ``num_cpus`` and build their encoder with
    ``encoder_factory`` (default: the collection's encoder by name, in ``dtype``),
    which must pickle: a function or ``functools.partial``, not a loaded model.
    ``address`` is passed to :func:`connect` when this process is not connected yet.
    """
    for name, value in (("concurrency", concurrency), ("batch_size", batch_size),
                        ("commit_chunks", commit_chunks)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise BadInputError(f"{name} must be an integer > 0, got {value!r}")
    if num_cpus < 0:
        raise BadInputError(f"num_cpus must be >= 0, got {num_cpus}")
    began = time.perf_counter()
    if encoder_factory is None:
        from ragmix.encoders import load_encoder

        encoder_factory = functools.partial(load_encoder, collection.manifest.encoder,
                                            dtype=dtype)
    # the collection's own writer lock: a local `ragmix index` cannot run alongside
    with collection.home.write_lock():
        plan = _plan(documents, collection.backend, collection.chunker, progress)
        if plan.todo:
            if not ray_module().is_initialized():
                if progress is not None:
                    progress.start("starting ray", None)
                connect(address)
            _embed_and_commit(plan, collection, encoder_factory, concurrency=concurrency,
                              batch_size=batch_size, num_cpus=num_cpus,
                              commit_chunks=commit_chunks, progress=progress)
        if progress is not None:
            progress.start("updating indexes", None)
        collection.backend.refresh()
    return IndexReport(added=plan.added, updated=len(plan.todo) - plan.added,
                       unchanged=plan.unchanged, chunks=plan.n_chunks,
                       skipped=tuple(plan.skipped), seconds=time.perf_counter() - began)


def ingest_with_ray(
    collection: Collection, paths: Sequence[str | Path], *, address: str | None = None,
    concurrency: int = 2, batch_size: int = BATCH_SIZE, num_cpus: float = 1.0,
    commit_chunks: int = COMMIT_CHUNKS, encoder_factory: Callable[[], Encoder] | None = None,
    dtype: str = "float32", max_bytes: int = 20_000_000, progress: Progress | None = None,
) -> IndexReport:
    """:meth:`Collection.add` (files and folders), embedding on Ray actors.

    The options are those of :func:`ingest_documents_with_ray`; ``max_bytes`` is
    :meth:`Collection.add`'s limit on one file.
    """
    from ragmix.documents import load_paths

    return ingest_documents_with_ray(
        collection, load_paths(paths, max_bytes=max_bytes), address=address,
        concurrency=concurrency, batch_size=batch_size, num_cpus=num_cpus,
        commit_chunks=commit_chunks, encoder_factory=encoder_factory, dtype=dtype,
        progress=progress)
