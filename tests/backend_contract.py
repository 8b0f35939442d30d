"""The contract every StoreBackend passes, as a test mixin (Haystack's document-store style).

A backend's test module subclasses :class:`StoreBackendContract` and supplies a
``backend`` fixture: a factory ``make(dim=DIM, *, same_as=None) -> StoreBackend``
that returns a new, empty backend, or, with ``same_as``, a second handle on the
storage of that (possibly closed) backend, as another process would open it. The
fixture closes every handle it made at teardown. See ``test_backend_embedded.py``.

The data are tiny fixed vectors and short texts, so every check is exact:
results are compared with a brute-force search over the vectors that were put.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from ragmix.errors import BadInputError
from ragmix.store.backend import (
    EMPTY_SCORE,
    ChunkNotFoundError,
    DocumentRow,
    PassageIndex,
    StoreBackend,
)
from ragmix.types import Chunk, Document

DIM = 8


def document(doc_id: str, texts: Sequence[str], *, source: str | None = None,
             title: str = "", mtime: float = 1.5) -> tuple[Document, list[Chunk]]:
    """A document whose text is ``texts`` joined by spaces, cut into one chunk per text."""
    text = " ".join(texts)
    chunks, start = [], 0
    for i, part in enumerate(texts):
        chunks.append(Chunk(doc_id, i, start, start + len(part), part))
        start += len(part) + 1
    doc = Document(doc_id, text, source=source or f"/data/{doc_id}.txt", title=title,
                   mtime=mtime, content_hash=f"hash-{doc_id}-{len(text)}")
    return doc, chunks


def vectors(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    """(n, dim) float32 unit vectors, the same for the same seed."""
    x = np.random.default_rng(seed).normal(size=(n, dim))  # (n, dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def put(backend: StoreBackend, doc_id: str, texts: Sequence[str], seed: int = 0,
        **fields) -> np.ndarray:
    """Commit one document in its own batch; returns its chunk ids (ascending)."""
    doc, chunks = document(doc_id, texts, **fields)
    with backend.batch() as batch:
        batch.put(doc, chunks, vectors(len(chunks), seed, backend.dim))
    return backend.chunk_ids(glob_literal(doc.source))


def glob_literal(text: str) -> str:
    """A glob matching exactly ``text``."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def brute_force(queries: np.ndarray, ids: np.ndarray, stored: np.ndarray,
                k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products: (q, dim), (n,), (n, dim) -> scores (q, k), ids (q, k), padded."""
    scores = queries @ stored.T  # (q, n)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (q, min(k, n))
    out_scores = np.full((len(queries), k), EMPTY_SCORE, dtype=np.float32)
    out_ids = np.full((len(queries), k), -1, dtype=np.int64)
    out_scores[:, : top.shape[1]] = np.take_along_axis(scores, top, axis=1)
    out_ids[:, : top.shape[1]] = ids[top]
    return out_scores, out_ids


class Failure(Exception):
    """Raised inside a batch to abort it."""


class StoreBackendContract:
    """Tests every StoreBackend must pass; subclasses supply the ``backend`` factory fixture."""

    @pytest.fixture
    def filled(self, backend):
        """A backend holding 5 documents of 6 chunks each, and (ids (30,), vectors (30, dim))."""
        b = backend()
        for d in range(5):
            put(b, f"doc{d}", [f"passage {d}-{c}" for c in range(6)], seed=d,
                source=f"/data/{'even' if d % 2 == 0 else 'odd'}/doc{d}.txt")
        ids = b.chunk_ids()
        return b, ids, b.embeddings(ids)

    # -- the protocol and an empty store ------------------------------------------
    def test_is_a_store_backend_and_a_passage_index(self, backend):
        b = backend()
        assert isinstance(b, StoreBackend) and isinstance(b, PassageIndex)
        assert b.dim == DIM

    def test_a_new_store_is_empty(self, backend):
        b = backend()
        assert (b.generation, b.count_documents(), b.count_chunks()) == (0, 0, 0)
        assert b.documents() == [] and b.get_documents(["a"]) == {}
        ids = b.chunk_ids()
        assert ids.dtype == np.int64 and ids.shape == (0,)
        scores, found = b.vector_search(vectors(2, 0), 3)
        assert found.tolist() == [[-1] * 3] * 2 and (scores == EMPTY_SCORE).all()
        assert b.keyword_search("passage", 5) == []

    # -- documents and chunks ------------------------------------------------------
    def test_put_round_trips_documents_and_chunks(self, backend):
        b = backend()
        doc, chunks = document("a", ["alpha beta", "gamma"], source="/x/a.md", title="A",
                               mtime=123.25)
        with b.batch() as batch:
            batch.put(doc, chunks, vectors(2, 0))
        assert b.documents() == [DocumentRow("a", "/x/a.md", "A", 123.25, doc.content_hash, 2)]
        assert b.get_documents(["a", "missing"]) == {"a": b.documents()[0]}
        assert (b.count_documents(), b.count_chunks()) == (1, 2)
        ids = b.chunk_ids()
        rows = b.chunk_rows(ids.tolist())
        got = [(r.chunk_id, r.doc_id, r.text, r.start, r.end, r.title, r.source)
               for r in (rows[int(i)] for i in ids)]
        assert got == [(int(ids[0]), "a", "alpha beta", 0, 10, "A", "/x/a.md"),
                       (int(ids[1]), "a", "gamma", 11, 16, "A", "/x/a.md")]
        assert all(doc.text[r.start:r.end] == r.text for r in rows.values())

    def test_chunk_ids_ascend_in_chunk_order_and_are_never_reused(self, backend):
        b = backend()
        first = put(b, "a", ["one", "two", "three"])
        rows = b.chunk_rows(first.tolist())
        assert [rows[int(i)].text for i in first] == ["one", "two", "three"]
        with b.batch() as batch:
            batch.delete(["a"])
        second = put(b, "b", ["four"])
        assert second.min() > first.max()
        again = put(b, "b", ["five", "six"])  # a replaced document gets new ids
        assert again.min() > second.max() and b.chunk_ids().tolist() == again.tolist()

    def test_put_replaces_a_document_whole(self, backend):
        b = backend()
        old = put(b, "a", ["one", "two", "three"], title="old")
        new = put(b, "a", ["four"], title="new")
        assert b.count_chunks() == 1 and b.chunk_ids().tolist() == new.tolist()
        assert b.chunk_rows(old.tolist()) == {}
        [row] = b.documents()
        assert (row.title, row.n_chunks) == ("new", 1)

    def test_chunk_rows_leave_out_missing_ids(self, backend):
        b = backend()
        ids = put(b, "a", ["one", "two"])
        rows = b.chunk_rows([int(ids[1]), 10**9, int(ids[0])])
        assert sorted(rows) == sorted(ids.tolist())
        assert b.chunk_rows([]) == {}

    def test_embeddings_round_trip_bit_exact(self, backend):
        b = backend()
        doc, chunks = document("a", ["one", "two", "three"])
        stored = vectors(3, 7)
        stored[0, :4] = [0.0, -0.0, 1e-45, 3.4e38]  # signed zero, a denormal, near the max
        stored[2] = np.nextafter(stored[2], np.float32(2))  # last-bit differences
        with b.batch() as batch:
            batch.put(doc, chunks, stored)
        ids = b.chunk_ids()
        got = b.embeddings(ids)
        assert got.dtype == np.float32 and got.shape == (3, DIM)
        assert got.tobytes() == stored.tobytes()
        order = [int(ids[2]), int(ids[0]), int(ids[2])]  # any order, repeats allowed
        assert b.embeddings(order).tobytes() == stored[[2, 0, 2]].tobytes()
        assert b.embeddings([]).shape == (0, DIM)

    def test_embeddings_of_missing_ids_raise(self, backend):
        b = backend()
        ids = put(b, "a", ["one"])
        with pytest.raises(ChunkNotFoundError) as raised:
            b.embeddings([int(ids[0]), 10**9])
        assert raised.value.missing == [10**9] and str(10**9) in str(raised.value)

    # -- globs -----------------------------------------------------------------------
    def test_document_globs_match_doc_id_or_source_ordered_by_doc_id(self, backend):
        b = backend()
        for doc_id, source in [("z", "/data/sub/z.md"), ("a", "/data/a.txt"),
                               ("m", "/other/m.md"), ("Notes", "/data/N.md")]:
            put(b, doc_id, ["text"], source=source)
        names = lambda pattern: [d.doc_id for d in b.documents(pattern)]  # noqa: E731
        assert names("*") == ["Notes", "a", "m", "z"]
        assert names("/data/*") == ["Notes", "a", "z"]  # * crosses /
        assert names("*.md") == ["Notes", "m", "z"]
        assert names("?") == ["a", "m", "z"]  # the doc id matches
        assert names("notes") == [] and names("N*") == ["Notes"]  # case-sensitive
        assert names("/data/[az].*") == ["a"]
        assert names("nothing*") == []

    def test_chunk_ids_for_a_source_are_exactly_its_documents_chunks(self, filled):
        b, ids, _ = filled
        even = b.chunk_ids("/data/even/*")
        want = [int(i) for i, row in sorted(b.chunk_rows(ids.tolist()).items())
                if "/even/" in row.source]
        assert even.dtype == np.int64 and even.tolist() == want and len(want) == 18
        assert b.chunk_ids("doc1").tolist() == ids[6:12].tolist()
        assert b.chunk_ids("nothing").tolist() == []

    # -- batches and the generation -------------------------------------------------
    def test_generation_increases_by_one_per_commit(self, backend):
        b = backend()
        put(b, "a", ["one"])
        assert b.generation == 1
        with b.batch() as batch:  # several writes, one commit
            for doc_id in ("b", "c"):
                batch.put(*document(doc_id, ["x", "y"]), vectors(2, 1))
            batch.delete(["a", "never-stored"])
        assert b.generation == 2 and [d.doc_id for d in b.documents()] == ["b", "c"]
        with b.batch():
            pass
        assert b.generation == 3
        b.refresh()
        assert b.generation == 3

    def test_a_failed_batch_leaves_nothing(self, filled):
        b, ids, stored = filled
        generation, query = b.generation, vectors(1, 99)
        before = b.vector_search(query, 10)
        with pytest.raises(Failure):
            with b.batch() as batch:
                batch.put(*document("new", ["zebra stripes"]), query)
                batch.delete(["doc0", "doc1"])
                raise Failure
        assert b.generation == generation and b.count_documents() == 5
        assert b.get_documents(["new"]) == {} and b.chunk_ids().tolist() == ids.tolist()
        assert b.keyword_search("zebra", 5) == []
        np.testing.assert_array_equal(b.vector_search(query, 10)[1], before[1])
        assert b.embeddings(ids).tobytes() == stored.tobytes()

    def test_a_bad_put_raises_and_its_batch_commits_nothing(self, backend):
        b = backend()
        doc, chunks = document("a", ["one", "two"])
        bad = [(doc, chunks, vectors(1, 0)),  # one vector for two chunks
               (doc, chunks, vectors(2, 0, DIM + 1)),  # another dimension
               (doc, [chunks[0], Chunk("other", 1, 4, 7, "two")], vectors(2, 0))]
        for args in bad:
            with pytest.raises(BadInputError):
                with b.batch() as batch:
                    batch.put(*document("fine", ["ok"]), vectors(1, 1))
                    batch.put(*args)
        assert (b.generation, b.count_documents(), b.count_chunks()) == (0, 0, 0)

    def test_other_handles_see_commits_and_never_an_open_batch(self, backend):
        b = backend()
        other = backend(same_as=b)
        with b.batch() as batch:
            batch.put(*document("a", ["lava flows", "ash falls"]), vectors(2, 0))
            assert (other.generation, other.count_chunks()) == (0, 0)
            assert other.keyword_search("lava", 5) == []
            assert other.vector_search(vectors(1, 0), 1)[1].tolist() == [[-1]]
        chunk_id = int(b.chunk_ids()[0])  # its vector is vectors(2, 0)[0] == vectors(1, 0)[0]
        assert (other.generation, other.count_chunks()) == (1, 2)
        assert [h.chunk_id for h in other.keyword_search("lava", 5)] == [chunk_id]
        assert other.vector_search(vectors(1, 0), 1)[1].tolist() == [[chunk_id]]
        with b.batch() as batch:
            batch.delete(["a"])
        assert other.keyword_search("lava", 5) == []
        assert other.vector_search(vectors(1, 0), 1)[1].tolist() == [[-1]]

    def test_a_reopened_store_holds_everything(self, filled, backend):
        b, ids, stored = filled
        generation, query = b.generation, vectors(3, 5)
        before = b.vector_search(query, 4)
        b.refresh()
        b.close()
        again = backend(same_as=b)
        assert again.generation == generation and again.chunk_ids().tolist() == ids.tolist()
        assert again.embeddings(ids).tobytes() == stored.tobytes()
        np.testing.assert_array_equal(again.vector_search(query, 4)[1], before[1])
        assert len(again.keyword_search("passage", 50)) == 30

    # -- vector search ---------------------------------------------------------------
    def test_vector_search_is_exact_top_k_best_first(self, filled):
        b, ids, stored = filled
        queries = vectors(4, 50)
        scores, found = b.vector_search(queries, 5)
        want_scores, want_ids = brute_force(queries, ids, stored, 5)
        assert found.dtype == np.int64 and found.shape == (4, 5)
        np.testing.assert_array_equal(found, want_ids)
        np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-5)
        assert (np.diff(scores, axis=1) <= 0).all()

    def test_vector_search_pads_past_the_last_hit(self, filled):
        b, ids, stored = filled
        scores, found = b.vector_search(vectors(1, 3), 40)
        assert sorted(found[0, :30].tolist()) == ids.tolist()
        assert (found[0, 30:] == -1).all() and (scores[0, 30:] == EMPTY_SCORE).all()

    @pytest.mark.parametrize("seed", range(4))
    def test_vector_search_allowed_ids_are_exactly_the_candidates(self, filled, seed):
        b, ids, stored = filled
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(ids), size=[1, 3, 7, 20][seed], replace=False))
        allowed = np.concatenate([ids[keep], [10**9]])  # an id not stored is ignored
        queries = vectors(3, 60 + seed)
        scores, found = b.vector_search(queries, 5, allowed_ids=allowed)
        want_scores, want_ids = brute_force(queries, ids[keep], stored[keep], 5)
        np.testing.assert_array_equal(found, want_ids)
        np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-5)
        empty = b.vector_search(queries, 5, allowed_ids=np.zeros(0, dtype=np.int64))[1]
        assert (empty == -1).all()

    def test_vector_search_filtered_by_source(self, filled):
        b, ids, stored = filled
        odd = b.chunk_ids("/data/odd/*")  # 12 chunks
        _, found = b.vector_search(vectors(2, 8), 20, allowed_ids=odd)
        for row in found:
            assert sorted(row[row >= 0].tolist()) == odd.tolist()

    def test_vector_search_rejects_bad_input(self, filled):
        b, _, _ = filled
        with pytest.raises(BadInputError):
            b.vector_search(vectors(1, 0), 0)
        with pytest.raises(BadInputError):
            b.vector_search(vectors(1, 0, DIM + 1), 3)

    def test_deleted_chunks_are_never_found_again(self, filled):
        b, ids, stored = filled
        gone = b.chunk_ids("doc2")
        put(b, "doc3", ["replaced"], seed=3)  # doc3's six old chunks go too
        gone = np.concatenate([gone, ids[18:24]])
        with b.batch() as batch:
            batch.delete(["doc2"])
        left = np.setdiff1d(ids, gone)
        rows = stored[np.isin(ids, gone)]  # (12, dim): query with the deleted vectors themselves
        _, found = b.vector_search(rows, 30)
        assert not np.isin(found, gone).any()
        assert np.isin(left, found[0]).all()
        assert b.chunk_rows(gone.tolist()) == {} and not np.isin(b.chunk_ids(), gone).any()
        hits = b.keyword_search("passage", 30)
        assert len(hits) == 18 and not np.isin([h.chunk_id for h in hits], gone).any()
        with pytest.raises(ChunkNotFoundError):
            b.embeddings(gone[:1])
        assert b.get_documents(["doc2"]) == {} and b.count_documents() == 4

    def test_searches_see_a_commit_without_refresh(self, filled):
        b, _, _ = filled
        b.refresh()
        query = vectors(1, 77)
        [new] = put(b, "late", ["quokka"], seed=77).tolist()
        assert b.vector_search(query, 1)[1].tolist() == [[new]]
        assert [h.chunk_id for h in b.keyword_search("quokka", 3)] == [new]
        before = b.vector_search(query, 5)
        b.refresh()
        np.testing.assert_array_equal(b.vector_search(query, 5)[1], before[1])

    # -- keyword search --------------------------------------------------------------
    def test_keyword_search_ranks_by_term_frequency_then_chunk_id(self, backend):
        b = backend()
        put(b, "a", ["volcano volcano lava ash", "volcano lava ash ember", "piano concert"])
        put(b, "b", ["piano concert", "rocket orbit"])
        a0, a1, a2 = b.chunk_ids("a").tolist()
        b0, b1 = b.chunk_ids("b").tolist()
        hits = b.keyword_search("volcano", 5)
        assert [h.chunk_id for h in hits] == [a0, a1]
        assert hits[0].score > hits[1].score > 0
        tie = b.keyword_search("piano", 5)
        assert [h.chunk_id for h in tie] == [a2, b0] and tie[0].score == tie[1].score
        assert [h.chunk_id for h in b.keyword_search("volcano", 1)] == [a0]
        assert b.keyword_search("submarine", 5) == []

    def test_keyword_search_allowed_ids_are_exactly_the_candidates(self, backend):
        b = backend()
        put(b, "a", ["volcano volcano", "volcano lava", "lava ash"])
        put(b, "b", ["volcano", "piano"])
        a0, a1, a2 = b.chunk_ids("a").tolist()
        b0, b1 = b.chunk_ids("b").tolist()
        allowed = np.array([a1, a2, b1, 10**9])
        assert [h.chunk_id for h in b.keyword_search("volcano", 5, allowed_ids=allowed)] == [a1]
        only_b = b.chunk_ids("b")
        assert [h.chunk_id for h in b.keyword_search("volcano", 5, allowed_ids=only_b)] == [b0]
        assert b.keyword_search("volcano", 5, allowed_ids=np.zeros(0, dtype=np.int64)) == []
