r"""A collection: documents, chunks, embeddings and search indexes, in a directory or a database.

A collection lives in a directory (the embedded backend) or in a PostgreSQL
database, named by the URL ``postgresql://USER@HOST:PORT/DB?collection=NAME``
(:mod:`ragmix.store.home`; every method works the same on both). A directory's
layout::

    DIR/manifest.json   encoder, chunker, index and BM25 settings
    DIR/store.sqlite    documents, chunks and embeddings (the truth)
    DIR/dense.faiss     FAISS view      DIR/bm25/   BM25 view
    DIR/views.json      which store generation each view reflects

The manifest names the encoder, not the precision it computed in: ``dtype``
("auto": bf16 where the CPU has AMX) is a setting of each process that
opens the collection. Vectors embedded in bf16 and in float32 agree to cosine
0.9999, so documents indexed one way are searched by queries embedded the other.

Example (the default encoder is all-MiniLM-L6-v2; hashing-256 needs no model):

>>> import tempfile
>>> from pathlib import Path
>>> tmp = tempfile.TemporaryDirectory()
>>> notes = Path(tmp.name, "notes")
>>> notes.mkdir()
>>> _ = (notes / "chunks.md").write_text("# Chunks\n\nA chunk is a passage of a document.")
>>> _ = (notes / "views.md").write_text("# Views\n\nThe FAISS and BM25 views are rebuilt.")
>>> with Collection.create(Path(tmp.name, "my-col"), encoder="hashing-256") as col:
...     report = col.add([notes])
>>> report.added, report.chunks
(2, 2)
>>> with Collection.open(Path(tmp.name, "my-col")) as col:  # the manifest names the encoder
...     hits = col.search("what is a chunk?", k=2, mode="hybrid")
>>> [(hit.rank, hit.title) for hit in hits]
[(1, 'Chunks'), (2, 'Views')]
>>> tmp.cleanup()
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragmix.chunking import chunker_from_settings, make_chunker
from ragmix.chunking.base import Chunker
from ragmix.encoders import DEFAULT_ENCODER, load_encoder
from ragmix.encoders.base import Encoder
from ragmix.errors import BadInputError, CollectionError, EncoderMismatchError
from ragmix.modes import DEFAULT_RERANK_DEPTH
from ragmix.rerank.base import RerankedSearch, Reranker
from ragmix.retrieval.fusion import softmax_probs
from ragmix.retrieval.retrievers import (
    DEFAULT_FUSION,
    MODES,
    SPLADE_MODES,
    SPLADE_WEIGHT,
    BM25Retriever,
    DenseRetriever,
    FusedRetriever,
    HybridRetriever,
    Retriever,
    SpladeRetriever,
)
from ragmix.store.backend import DocumentRow, PassageIndex, StoreBackend
from ragmix.store.embedded import REFINED_KINDS, STORE_FILE, EmbeddedBackend, SpladeSearch
from ragmix.store.home import CollectionHome, DirectoryHome, home_for
from ragmix.store.ingest import COMMIT_CHUNKS, IndexReport, Progress, ingest
from ragmix.store.manifest import Manifest
from ragmix.store.searching import BoundSearch, _KeywordSearch, _VectorSearch
from ragmix.types import Document, Hit, ScoredId, Skipped

if TYPE_CHECKING:
    from ragmix.encoders.splade import SparseEncoder
    from ragmix.index.base import VectorIndex
    from ragmix.store.sqlite_store import SqliteStore
    from ragmix.store.views import Views

__all__ = ["MODES", "REFINED_KINDS", "STORE_FILE", "BoundSearch", "Collection",
           "check_encoder_name"]


def check_encoder_name(location: str | Path, spec: str) -> None:
    """Raise if ``spec`` names another encoder than the one that built the collection."""
    from ragmix.encoders import canonical_name

    built_with = home_for(location).load_manifest().encoder
    if canonical_name(spec) != built_with:
        raise EncoderMismatchError(
            f"collection {str(location)!r} was built with encoder {built_with!r}, not {spec!r}; "
            "leave the encoder out, or index into a new collection"
        )


class Collection:
    """Documents indexed for dense, BM25 and hybrid search; see the module docstring.

    Its storage and search go through ``backend`` (a :class:`StoreBackend`), by
    default the one of ``home`` (a directory: the embedded backend). ``directory`` is
    the collection's folder, None for a collection in a database; ``location`` names
    it either way.
    """

    def __init__(self, home: CollectionHome | Path, manifest: Manifest, encoder: Encoder | None,
                 *, dtype: str = "float32", backend: StoreBackend | None = None) -> None:
        self.home: CollectionHome = DirectoryHome(home) if isinstance(home, Path) else home
        self.directory: Path | None = self.home.directory
        self.location = self.home.location
        self.manifest = manifest
        self._encoder = encoder
        self._dtype = dtype  # for the encoder the manifest names, when it is loaded
        # A fine-tuned query tower (ragmix train rag) searching the frozen passage index.
        self.query_encoder: Encoder | None = None
        if backend is not None and backend.dim != manifest.dim:
            raise EncoderMismatchError(
                f"the backend {backend!r} holds vectors of dim {backend.dim}, the manifest's "
                f"encoder {manifest.encoder!r} has dim {manifest.dim}; give a backend of "
                f"dim {manifest.dim}")
        self.backend: StoreBackend = (self.home.open_backend(manifest)
                                      if backend is None else backend)
        self.chunker: Chunker = chunker_from_settings(manifest.chunker)

    @property
    def store(self) -> SqliteStore:
        """The embedded backend's SQLite store (embedded collections only; see ``backend``)."""
        return self._embedded().store

    @property
    def views(self) -> Views:
        """The embedded backend's FAISS and BM25 views (embedded collections only)."""
        return self._embedded().views

    def _embedded(self) -> EmbeddedBackend:
        if not isinstance(self.backend, EmbeddedBackend):
            raise CollectionError(
                f"collection {self.location!r} is stored in {self.backend!r}, which has "
                "no SQLite store or FAISS views; use the StoreBackend methods of col.backend")
        return self.backend

    def passage_index(self) -> PassageIndex:
        """The passages as training reads them: texts, embeddings and dense search."""
        return self.backend

    # -- opening ----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        location: str | Path,
        *,
        encoder: Encoder | str = DEFAULT_ENCODER,
        chunker: Chunker | None = None,
        index: str | None = None,
        index_params: dict[str, Any] | None = None,
        bm25_params: dict[str, Any] | None = None,
        dtype: str = "float32",
    ) -> Collection:
        """Create a new, empty collection at ``location`` (which must not hold one).

        ``location`` is a directory or ``postgresql://USER@HOST:PORT/DB?collection=NAME``.
        ``index`` defaults to ``flat`` (FAISS) in a directory and ``hnsw`` in PostgreSQL
        (there ``index_params`` may also set ``storage="halfvec"`` and
        ``keyword="tsvector"``, see :class:`~ragmix.store.pg.settings.PgSettings`).
        ``dtype`` (:data:`ragmix.dtypes.DTYPES`) applies to an encoder given by name.
        """
        home = home_for(location)
        if home.exists():
            raise CollectionError(
                f"{home.location!r} already holds a collection; open it with Collection.open"
            )
        enc = load_encoder(encoder, dtype=dtype) if isinstance(encoder, str) else encoder
        chunker = chunker or make_chunker("words")
        manifest = Manifest(
            encoder=enc.name,
            dim=enc.dim,
            chunker=chunker.settings(),
            # validated before anything is written
            index=home.index_settings(index or home.default_index, dict(index_params or {}),
                                      enc.dim),
            bm25=dict(bm25_params or {}),
        )
        return cls(home, manifest, enc, dtype=dtype, backend=home.create(manifest))

    @classmethod
    def open(cls, location: str | Path, *, encoder: Encoder | None = None,
             query_encoder: Encoder | None = None, dtype: str = "float32") -> Collection:
        """Open the collection at ``location`` (a directory or a PostgreSQL URL, see
        :meth:`create`); ``encoder`` must be the one that built it.

        ``query_encoder`` embeds queries instead of ``encoder`` (a query tower
        fine-tuned against this index, of the same dimension). Without
        ``encoder``, the manifest's is loaded when first needed, computing in
        ``dtype`` (:data:`ragmix.dtypes.DTYPES`).
        """
        from ragmix.dtypes import check_dtype

        check_dtype(dtype)
        home = home_for(location)
        manifest = home.load_manifest()
        if encoder is not None and (encoder.name != manifest.encoder or encoder.dim != manifest.dim):
            raise EncoderMismatchError(
                f"collection {home.location!r} was built with encoder {manifest.encoder!r} "
                f"(dim {manifest.dim}), not {encoder.name!r} (dim {encoder.dim}); open it "
                "without an encoder, or re-index into a new collection"
            )
        col = cls(home, manifest, encoder, dtype=dtype)
        if query_encoder is not None:
            col.use_query_encoder(query_encoder)
        return col

    def use_query_encoder(self, encoder: Encoder) -> None:
        """Embed queries with ``encoder`` (a fine-tuned query tower of the same dimension)."""
        if encoder.dim != self.manifest.dim:
            raise EncoderMismatchError(
                f"query encoder {encoder.name!r} has dim {encoder.dim}, the collection "
                f"{self.location!r} dim {self.manifest.dim}")
        self.query_encoder = encoder

    @classmethod
    def open_or_create(cls, location: str | Path, **create_options: Any) -> Collection:
        """Open ``location`` if it holds a collection, else create one with the options."""
        if home_for(location).exists():
            encoder = create_options.get("encoder")
            if isinstance(encoder, str):
                check_encoder_name(location, encoder)
                encoder = None
            return cls.open(location, encoder=encoder,
                            dtype=create_options.get("dtype", "float32"))
        return cls.create(location, **create_options)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def encoder(self) -> Encoder:
        """The encoder named in the manifest, loaded on first use."""
        if self._encoder is None:
            self._encoder = load_encoder(self.manifest.encoder, dtype=self._dtype)
            if self._encoder.dim != self.manifest.dim:
                raise EncoderMismatchError(
                    f"encoder {self.manifest.encoder!r} now has dim {self._encoder.dim}, "
                    f"the collection was built with dim {self.manifest.dim}"
                )
        return self._encoder

    # -- writing ----------------------------------------------------------------
    def add(
        self,
        paths: Sequence[str | Path],
        *,
        progress: Progress | None = None,
        max_bytes: int = 20_000_000,
        commit_chunks: int = COMMIT_CHUNKS,
    ) -> IndexReport:
        """Index files and folders: new documents are added, changed ones replaced.

        Files (and the rows of a BEIR ``corpus.jsonl``) are read one at a time and
        committed ``commit_chunks`` chunks at a time: memory does not grow with the corpus.
        """
        from ragmix.documents import load_paths

        return self.add_documents(load_paths(paths, max_bytes=max_bytes), progress=progress,
                                  commit_chunks=commit_chunks)

    def add_documents(
        self, documents: Iterable[Document | Skipped], *, progress: Progress | None = None,
        commit_chunks: int = COMMIT_CHUNKS,
    ) -> IndexReport:
        """Index documents from any iterable, read lazily (``Skipped`` items are reported,
        not indexed); a generator keeps memory flat, see :func:`ragmix.store.ingest.ingest`."""
        if commit_chunks <= 0:
            raise BadInputError(f"commit_chunks must be > 0, got {commit_chunks}")
        with self._write_lock():
            report = ingest(documents, self.backend, self.chunker, lambda: self.encoder,
                            progress, commit_chunks=commit_chunks)
            if progress is not None:
                progress.start("updating indexes", None)
            self.backend.refresh()
        return report

    def delete(self, patterns: Sequence[str]) -> list[str]:
        """Delete documents whose id or source matches any glob; returns their ids."""
        with self._write_lock():
            doc_ids = sorted({d.doc_id for p in patterns for d in self.backend.documents(p)})
            if doc_ids:
                with self.backend.batch() as batch:
                    batch.delete(doc_ids)
            self.backend.refresh()
        return doc_ids

    def _write_lock(self) -> AbstractContextManager[None]:
        """Held while this process writes: a lock file, or a PostgreSQL advisory lock."""
        return self.home.write_lock()

    # -- reading ----------------------------------------------------------------
    def retriever(
        self, mode: str = "hybrid", *, fusion: str = DEFAULT_FUSION, rrf_k: int = 60,
        dense_weight: float = 0.5, depth: int = 100, vectors: VectorIndex | None = None,
        sparse_encoder: SparseEncoder | None = None,
    ) -> Retriever:
        """The retriever for ``mode`` over this collection's backend.

        ``vectors`` (anything with a VectorIndex's ``search``, such as
        :class:`ragmix.distributed.ShardedSearcher`) replaces the backend's vector search.
        ``splade`` and ``hybrid-splade`` encode with ``sparse_encoder`` (default:
        :func:`~ragmix.encoders.splade.load_splade`, SPLADE-tiny or ``$RAGMIX_SPLADE_MODEL``)
        and search the collection's SPLADE view, which the first such search builds
        (collections in a directory only, for now). ``hybrid-splade`` fuses dense, BM25
        and SPLADE with weights ``dense_weight``, ``1 - dense_weight`` and
        :data:`~ragmix.retrieval.retrievers.SPLADE_WEIGHT` (a third each by default).
        """
        if mode not in MODES:
            raise BadInputError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "bm25":
            return BM25Retriever(_KeywordSearch(self.backend))
        if mode in SPLADE_MODES:
            if not isinstance(self.backend, EmbeddedBackend):
                raise CollectionError(
                    f"retrieval mode {mode!r} needs a SPLADE view, which only collections in a "
                    f"directory have for now; {self.location!r} is stored in {self.backend!r}. "
                    "Use dense, bm25 or hybrid, or copy it into a directory (ragmix copy)")
            from ragmix.encoders.splade import load_splade

            encoder = sparse_encoder or load_splade(dtype=self._dtype)
            splade = SpladeRetriever(encoder, SpladeSearch(self.backend, encoder))
            if mode == "splade":
                return splade
        dense = DenseRetriever(self.query_encoder or self.encoder,
                               vectors if vectors is not None else _VectorSearch(self.backend))
        if mode == "dense":
            return dense
        sparse = BM25Retriever(_KeywordSearch(self.backend))
        if mode == "hybrid-splade":
            return FusedRetriever([dense, sparse, splade],
                                  [dense_weight, 1.0 - dense_weight, SPLADE_WEIGHT],
                                  fusion=fusion, rrf_k=rrf_k, depth=depth)
        return HybridRetriever(dense, sparse, fusion=fusion, rrf_k=rrf_k,
                               dense_weight=dense_weight, depth=depth)

    def search(
        self, query: str, k: int = 5, *, mode: str = "hybrid", source: str | None = None,
        fusion: str = DEFAULT_FUSION, dense_weight: float = 0.5, temperature: float = 1.0,
        rerank: Reranker | None = None, rerank_depth: int = DEFAULT_RERANK_DEPTH,
    ) -> list[Hit]:
        """Top-k passages for ``query``; ``source`` is a glob on document path or id.

        Each hit carries p(z|x) = softmax(score / temperature) over the top-k.
        With ``rerank`` (:mod:`ragmix.rerank`), the top ``rerank_depth`` are re-scored
        by it and the best k kept.
        """
        if not query or not query.strip():
            raise BadInputError("query must not be empty")
        if k <= 0:
            raise BadInputError(f"k must be > 0, got {k}")
        if rerank is not None:
            plain = BoundSearch(self, fusion=fusion, source=source, temperature=temperature,
                                dense_weight=dense_weight)
            return RerankedSearch(plain, rerank, depth=rerank_depth).search(query, k, mode=mode)
        allowed = self.backend.chunk_ids(source) if source else None
        if allowed is not None and len(allowed) == 0:
            return []
        retriever = self.retriever(mode, fusion=fusion, dense_weight=dense_weight)
        return self.hits(retriever.retrieve(query, k, allowed_ids=allowed), temperature=temperature)

    def searcher(self, *, fusion: str = DEFAULT_FUSION, source: str | None = None,
                 rerank: Reranker | None = None,
                 rerank_depth: int = DEFAULT_RERANK_DEPTH) -> BoundSearch | RerankedSearch:
        """This collection with fixed search settings, for code that only passes ``mode``.

        ``RAG``, ``MarginalRAG`` and the evaluation functions call
        ``search(query, k, mode=...)``; this fixes the fusion, source filter and reranker.
        """
        plain = BoundSearch(self, fusion=fusion, source=source)
        return plain if rerank is None else RerankedSearch(plain, rerank, depth=rerank_depth)

    def hits(self, scored: Sequence[ScoredId], *, temperature: float = 1.0) -> list[Hit]:
        """Materialise ranked chunk ids into :class:`Hit` values with p(z|x)."""
        if not scored:
            return []
        rows = self.backend.chunk_rows([s.chunk_id for s in scored])
        # a chunk deleted by another process since the search is dropped before p(z|x)
        scored = [s for s in scored if s.chunk_id in rows]
        probs = softmax_probs(np.array([s.score for s in scored]), temperature=temperature)
        return [
            Hit(chunk_id=s.chunk_id, doc_id=r.doc_id, text=r.text, score=s.score, prob=float(p),
                rank=rank, title=r.title, source=r.source, start=r.start, end=r.end)
            for rank, (s, p) in enumerate(zip(scored, probs), start=1)
            for r in (rows[s.chunk_id],)
        ]

    def documents(self, pattern: str = "*") -> list[DocumentRow]:
        return self.backend.documents(pattern)

    def info(self) -> dict[str, Any]:
        """Counts, settings and size on disk, for ``ragmix info``."""
        return {
            "path": self.location if self.directory is None else str(self.directory.resolve()),
            "documents": self.backend.count_documents(),
            "chunks": self.backend.count_chunks(),
            "generation": self.backend.generation,
            "disk_bytes": self.home.disk_bytes(self.backend),
            **asdict(self.manifest),
        }

