"""Re-embed a collection with another encoder (a fine-tuned one) into a new directory.

The source is never touched. The new directory gets a copy of the store that
records the source and the encoder, then every chunk's embedding is replaced
batch by batch; each batch commits with the id it reached, so an interrupted
run resumes where it stopped (and refuses to resume with another source or
encoder). Only when all chunks are done is the manifest (naming the new
encoder) written and the indexes built: until then the directory is not a
collection and cannot be searched with mixed embeddings.

Both ends are directories: a collection in PostgreSQL is copied to one first
(``ragmix copy``), re-embedded there, and copied back (see :func:`check_directories`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ragmix.encoders import load_encoder
from ragmix.encoders.base import Encoder
from ragmix.errors import CollectionError
from ragmix.store.collection import Collection
from ragmix.store.embedded import STORE_FILE
from ragmix.store.home import home_for, is_url
from ragmix.store.ingest import COMMIT_CHUNKS, Progress
from ragmix.store.manifest import MANIFEST_NAME, Manifest
from ragmix.store.sqlite_store import SqliteStore

_PROGRESS_KEY = "reembed_through"  # last chunk id re-embedded, in the target's meta table
_JOB_KEY = "reembed_job"  # {"source", "encoder", "dim"} of the unfinished re-embedding


def reembed(source: str | Path, target: str | Path, encoder: Encoder | str, *,
            progress: Progress | None = None, batch: int = COMMIT_CHUNKS) -> Collection:
    """Copy the collection ``source`` to ``target`` with every chunk embedded by ``encoder``.

    Returns the new collection, open (close it). Run it again after a crash
    and it resumes.

    Example::

        reembed("scifact-col", "scifact-trained", "models/scifact-minilm").close()
    """
    from ragmix.index.faiss_index import FaissIndex

    check_directories(source, target)
    source, target = Path(source), Path(target)
    manifest = Manifest.load(source)
    if (target / MANIFEST_NAME).exists():
        raise CollectionError(f"{str(target)!r} already holds a collection; choose a new --out")
    enc = load_encoder(encoder) if isinstance(encoder, str) else encoder
    index = dict(manifest.index)
    FaissIndex(index.pop("kind"), enc.dim, **index)  # the index settings must fit the new dim
    job = json.dumps({"source": str(source.resolve()), "encoder": enc.name, "dim": enc.dim})
    target.mkdir(parents=True, exist_ok=True)
    path = target / STORE_FILE
    if not path.exists():
        partial = path.with_suffix(".partial")
        src = SqliteStore(source / STORE_FILE)
        try:
            src.copy_to(partial, {_JOB_KEY: job})
        finally:
            src.close()
        partial.rename(path)
    store = SqliteStore(path)
    try:
        started = store.meta(_JOB_KEY)
        if started != job:
            raise CollectionError(
                f"{str(target)!r} holds an unfinished re-embedding {started}, not {job}; "
                "run that one again, or delete the directory to start over")
        done = int(store.meta(_PROGRESS_KEY) or -1)
        if progress is not None:
            progress.start("embedding", store.count_chunks())
            progress.advance("embedding", int((store.chunk_ids() <= done).sum()))
        while True:
            ids, texts = store.texts_after(done, batch)
            if not len(ids):
                break
            vectors = enc.encode_documents(texts)  # (n, dim)
            done = int(ids[-1])
            store.set_embeddings(ids, vectors, {_PROGRESS_KEY: str(done)})
            if progress is not None:
                progress.advance("embedding", len(ids))
        store.set_embeddings([], np.zeros((0, enc.dim), dtype=np.float32),
                             {_PROGRESS_KEY: None, _JOB_KEY: None})
    finally:
        store.close()
    Manifest(encoder=enc.name, dim=enc.dim, chunker=manifest.chunker, index=manifest.index,
             bm25=manifest.bm25).save(target)
    col = Collection.open(target, encoder=enc)
    try:
        if progress is not None:
            progress.start("updating indexes", None)
        col.backend.refresh()
    except BaseException:
        col.close()
        raise
    return col


def check_directories(source: str | Path, target: str | Path) -> None:
    """Raise, naming the ``ragmix copy`` round trip, if either end is a PostgreSQL URL.

    Re-embedding resumes through the SQLite store's own progress rows and writes the
    manifest last, so a half-done target is never a collection; a PostgreSQL
    collection has its manifest from the start, so it goes through a directory.
    """
    for role, location in (("source", source), ("target", target)):
        if is_url(location):
            where = home_for(location).location  # no password in the message
            raise CollectionError(
                f"ragmix reembed needs directories, and the {role} {where!r} is in "
                "PostgreSQL; go through a directory: ragmix copy SRC_URL tmp-col, then "
                "ragmix reembed -c tmp-col --encoder ENCODER --out tmp-new, then "
                "ragmix copy tmp-new 'postgresql://...?collection=NEW'")
