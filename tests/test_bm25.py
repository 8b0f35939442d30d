"""BM25Index against a brute-force Lucene BM25 and against raw bm25s."""

from __future__ import annotations

import math
import os
import re
from collections import Counter

import numpy as np
import pytest

bm25s = pytest.importorskip("bm25s")
Stemmer = pytest.importorskip("Stemmer")

from bm25s.stopwords import STOPWORDS_EN  # noqa: E402

from ragmix.errors import BadInputError  # noqa: E402
from ragmix.retrieval.bm25 import BM25Index, Tokenization  # noqa: E402
from ragmix.types import ScoredId  # noqa: E402

WORDS = (
    "cat cats dog dogs run runs running ran jump jumped jumping quick quickly fox foxes "
    "river rivers bank banks money loan loans the a of and is to in it"
).split()


def reference_terms(text: str) -> list[str]:
    """Lowercase, split like scikit-learn, drop English stopwords, Snowball-stem."""
    stemmer = Stemmer.Stemmer("english")
    stop = set(STOPWORDS_EN)
    return [
        stemmer.stemWord(w) for w in re.findall(r"(?u)\b\w\w+\b", text.lower()) if w not in stop
    ]


def lucene_bm25(query: str, texts: list[str], k1: float = 1.2, b: float = 0.75) -> list[float]:
    """Brute force: sum over query terms t of idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))."""
    docs = [Counter(reference_terms(t)) for t in texts]
    lengths = [sum(d.values()) for d in docs]
    avgdl = sum(lengths) / len(docs)
    n = len(docs)
    out = []
    for doc, dl in zip(docs, lengths):
        score = 0.0
        for term in reference_terms(query):  # repeated query terms count again, as in Lucene
            df = sum(term in d for d in docs)
            if df == 0 or term not in doc:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = doc[term]
            score += idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))
        out.append(score)
    return out


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(3, 25))) for _ in range(150)]
    texts += ["Stopwords only: the and of", ""]
    ids = (np.arange(len(texts)) * 5 + 100).astype(np.int64)
    return ids, texts


@pytest.fixture(scope="module")
def index(corpus):
    return BM25Index.build(*corpus)


@pytest.mark.parametrize(
    "query", ["quick fox", "running dogs and cats", "bank loans money money", "The river"]
)
def test_scores_match_brute_force_lucene(index, corpus, query):
    ids, texts = corpus
    expected = lucene_bm25(query, texts)
    hits = index.search(query, len(texts))
    assert hits, "every test query has known terms"
    got = {h.chunk_id: h.score for h in hits}
    want = {int(i): s for i, s in zip(ids, expected) if s > 0}
    assert got.keys() == want.keys()
    for chunk_id, score in want.items():
        assert got[chunk_id] == pytest.approx(score, rel=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("k1,b", [(0.9, 0.4), (2.0, 1.0)])
def test_k1_and_b(corpus, k1, b):
    ids, texts = corpus
    index = BM25Index.build(ids, texts, k1=k1, b=b)
    expected = lucene_bm25("jumping fox", texts, k1=k1, b=b)
    got = {h.chunk_id: h.score for h in index.search("jumping fox", len(texts))}
    for i, s in zip(ids, expected):
        assert got.get(int(i), 0.0) == pytest.approx(s, rel=1e-5)


def test_same_top_k_as_raw_bm25s(index, corpus):
    ids, texts = corpus
    stemmer = Stemmer.Stemmer("english")
    raw = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    raw.index(bm25s.tokenize(texts, stemmer=stemmer, show_progress=False), show_progress=False)
    for query in ["quick fox", "river bank", "jumped"]:
        tokens = bm25s.tokenize(query, stemmer=stemmer, show_progress=False, return_ids=False)
        docs, scores = raw.retrieve(tokens, k=5, show_progress=False)
        hits = index.search(query, 5)
        np.testing.assert_allclose([h.score for h in hits], scores[0], rtol=1e-6)
        # same scores at each rank; ids agree except where scores tie
        for hit, doc, score in zip(hits, docs[0], scores[0]):
            assert hit.chunk_id == ids[doc] or any(
                h.chunk_id == ids[doc] for h in index.search(query, 50) if h.score == score
            )


def test_batches_score_as_raw_bm25s_bit_for_bit(corpus):
    """build_batches tokenizes a batch at a time into its own vocabulary: every document's
    score must still be exactly bm25s's, built from bm25s.tokenize over the whole corpus."""
    ids, texts = corpus
    stemmer = Stemmer.Stemmer("english")
    raw = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    raw.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
              create_empty_token=False, show_progress=False)
    cuts = [0, 1, 7, 100, len(texts)]  # uneven batches, one of a single text
    index = BM25Index.build_batches((ids[a:b], texts[a:b]) for a, b in zip(cuts, cuts[1:]))
    assert np.array_equal(index.ids, ids)
    for query in ["quick fox", "running dogs and cats", "bank loans money money", "jumped"]:
        tokens = bm25s.tokenize(query, stopwords="en", stemmer=stemmer, show_progress=False,
                                return_ids=False)[0]
        want = raw.get_scores(tokens)  # (n,) float32
        got = {h.chunk_id: h.score for h in index.search(query, len(texts))}
        assert got == {int(i): float(s) for i, s in zip(ids, want) if s > 0}


def test_stemming_matches_inflections():
    index = BM25Index.build(np.array([1, 2, 3]), ["She runs daily", "a quiet lake", "He ran"])
    assert [h.chunk_id for h in index.search("running", 5)] == [1]
    assert index.search("lakes", 5)[0].chunk_id == 2


def test_stopwords_are_ignored(index):
    assert index.search("the and of", 10) == []
    assert index.search("the fox", 10) == index.search("fox", 10)


def test_no_stopwords_and_no_stemming():
    index = BM25Index.build(np.array([1, 2]), ["the runs", "the run"], stemmer=None, stopwords=None)
    assert [h.chunk_id for h in index.search("run", 5)] == [2]
    assert len(index.search("the", 5)) == 2
    assert index.tokenization == Tokenization(stemmer=None, stopwords=None)


def test_unknown_terms_give_nothing(index):
    assert index.search("zebra xylophone", 5) == []
    assert index.search("", 5) == []
    assert index.search("!!! ??", 5) == []


def test_k_and_ties(corpus):
    index = BM25Index.build(np.array([30, 10, 20]), ["fox", "fox", "fox"])
    assert [h.chunk_id for h in index.search("fox", 2)] == [10, 20]  # ties by chunk id
    assert len(index.search("fox", 50)) == 3
    with pytest.raises(BadInputError, match="k must be an integer > 0, got 0"):
        index.search("fox", 0)


def test_allowed_ids(index, corpus):
    ids, texts = corpus
    allowed = ids[::3]
    full = index.search("quick fox river", len(texts))
    filtered = index.search("quick fox river", 10, allowed_ids=allowed)
    assert filtered == [h for h in full if h.chunk_id in set(allowed.tolist())][:10]
    assert index.search("quick fox", 10, allowed_ids=np.array([], dtype=np.int64)) == []
    assert index.search("quick fox", 10, allowed_ids=np.array([999_999])) == []


def test_search_batch(index):
    queries = ["quick fox", "zebra", "river bank"]
    assert index.search_batch(queries, 4) == [index.search(q, 4) for q in queries]
    allowed = index.ids[:40]
    assert index.search_batch(queries, 4, allowed_ids=allowed) == [
        index.search(q, 4, allowed_ids=allowed) for q in queries
    ]


def test_len_and_ids(index, corpus):
    ids, _ = corpus
    assert len(index) == len(ids)
    assert index.ids.dtype == np.int64 and np.array_equal(index.ids, ids)


def test_save_load_round_trip(index, tmp_path):
    path = tmp_path / "bm25"
    index.save(path)
    index.save(path)  # replacing an existing index
    assert sorted(os.listdir(tmp_path)) == ["bm25"]  # no temporary folders left
    loaded = BM25Index.load(path)
    assert np.array_equal(loaded.ids, index.ids)
    assert (loaded.k1, loaded.b, loaded.tokenization) == (index.k1, index.b, index.tokenization)
    for query in ["quick fox", "running dogs", "zebra"]:
        assert loaded.search(query, 7) == index.search(query, 7)
    mapped = BM25Index.load(path, mmap=True)
    assert mapped.search("quick fox", 7) == index.search("quick fox", 7)


def test_empty_corpus(tmp_path):
    index = BM25Index.build(np.array([], dtype=np.int64), [])
    assert len(index) == 0 and index.search("anything", 3) == []
    assert index.search_batch(["a b", "c d"], 3) == [[], []]
    index.save(tmp_path / "empty")
    assert BM25Index.load(tmp_path / "empty").search("anything", 3) == []


def test_corpus_without_terms():
    index = BM25Index.build(np.array([4, 5]), ["the of", ""])
    assert len(index) == 2 and index.search("the", 3) == []


def test_bad_inputs(tmp_path):
    with pytest.raises(BadInputError, match="one id per text"):
        BM25Index.build(np.array([1, 2]), ["a"])
    with pytest.raises(BadInputError, match="unique"):
        BM25Index.build(np.array([1, 1]), ["a b", "c d"])
    with pytest.raises(BadInputError, match="unknown stopwords 'klingon'"):
        BM25Index.build(np.array([1]), ["a"], stopwords="klingon")
    with pytest.raises(BadInputError, match="unknown stemmer 'klingon'"):
        BM25Index.build(np.array([1]), ["a"], stemmer="klingon")
    with pytest.raises(BadInputError, match="b must be in"):
        BM25Index.build(np.array([1]), ["a"], b=1.5)
    with pytest.raises(BadInputError, match="no BM25 index"):
        BM25Index.load(tmp_path / "missing")


def test_results_are_scored_ids(index):
    hit = index.search("fox", 1)[0]
    assert isinstance(hit, ScoredId) and type(hit.chunk_id) is int and type(hit.score) is float
