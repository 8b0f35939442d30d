"""Re-embed a collection with another encoder (a fine-tuned one) into a new directory.

The source is never touched. The new directory gets a copy of the store, then
every chunk's embedding is replaced batch by batch; each batch commits with
the id it reached, so an interrupted run resumes where it stopped. Only when
all chunks are done is the manifest (naming the new encoder) written and the
indexes built: until then the directory is not a collection and cannot be
searched with mixed embeddings.
"""

from __future__ import annotations

from pathlib import Path

from ragmix.encoders import load_encoder
from ragmix.encoders.base import Encoder
from ragmix.errors import CollectionError
from ragmix.store.collection import STORE_FILE, Collection
from ragmix.store.ingest import COMMIT_CHUNKS, Progress
from ragmix.store.manifest import MANIFEST_NAME, Manifest
from ragmix.store.sqlite_store import SqliteStore

_PROGRESS_KEY = "reembed_through"  # last chunk id re-embedded, in the target's meta table
_SOURCE_KEY = "reembed_source"


def reembed(source: str | Path, target: str | Path, encoder: Encoder | str, *,
            progress: Progress | None = None, batch: int = COMMIT_CHUNKS) -> Collection:
    """Copy the collection ``source`` to ``target`` with every chunk embedded by ``encoder``.

    Returns the new collection, open (close it). Run it again after a crash
    and it resumes.

    Example::

        reembed("scifact-col", "scifact-trained", "models/scifact-minilm").close()
    """
    source, target = Path(source), Path(target)
    manifest = Manifest.load(source)
    if (target / MANIFEST_NAME).exists():
        raise CollectionError(f"{str(target)!r} already holds a collection; choose a new --out")
    enc = load_encoder(encoder) if isinstance(encoder, str) else encoder
    target.mkdir(parents=True, exist_ok=True)
    path = target / STORE_FILE
    if not path.exists():
        src = SqliteStore(source / STORE_FILE)
        try:
            src.copy_to(path.with_suffix(".partial"))
        finally:
            src.close()
        path.with_suffix(".partial").rename(path)
    store = SqliteStore(path)
    try:
        started = store.meta(_SOURCE_KEY)
        if started is not None and started != str(source.resolve()):
            raise CollectionError(f"{str(target)!r} holds an unfinished re-embedding of "
                                  f"{started!r}; delete it or finish that one")
        done = int(store.meta(_PROGRESS_KEY) or -1)
        if progress is not None:
            progress.start("embedding", store.count_chunks())
        for ids, texts in store.iter_texts(batch, after=done):
            vectors = enc.encode_documents(texts)  # (n, dim)
            store.set_embeddings(ids, vectors, {_PROGRESS_KEY: str(int(ids[-1])),
                                                _SOURCE_KEY: str(source.resolve())})
            if progress is not None:
                progress.advance("embedding", len(ids))
        store.set_embeddings([], vectors=_empty(enc.dim),
                             meta={_PROGRESS_KEY: None, _SOURCE_KEY: None})
    finally:
        store.close()
    Manifest(encoder=enc.name, dim=enc.dim, chunker=manifest.chunker, index=manifest.index,
             bm25=manifest.bm25).save(target)
    col = Collection.open(target, encoder=enc)
    if progress is not None:
        progress.start("updating indexes", None)
    col.views.refresh(persist=True)
    return col


def _empty(dim: int):
    import numpy as np

    return np.zeros((0, dim), dtype=np.float32)
