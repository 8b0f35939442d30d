"""Building bm25s's Lucene score matrix a batch of texts at a time, in flat memory.

``bm25s.tokenize`` keeps every text's tokens as Python lists, and ``BM25.index`` holds
three arrays per (document, term) pair while it sorts them into its score matrix:
3 GB at 1M 100-word passages, measured, on top of the texts. Here the corpus's term ids
are kept as one int32 array per batch (4 bytes a token), and the matrix, in bm25s's
layout (CSC: per term, its documents and their scores), is filled in place in two
passes over them, document frequencies and then scores, so memory holds the term ids,
the matrix and one batch. The scores are bm25s's bit for bit: its own idf function,
and the tf component as bm25s evaluates it (float64, stored as float32);
``tests/test_bm25.py`` compares the two on every document.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from ragmix._extras import require

if TYPE_CHECKING:
    from ragmix.retrieval.bm25 import Tokenization


class CorpusTerms:
    """Documents' term ids as ``bm25s.tokenize(..., return_ids=True)`` makes them, a batch at
    a time: the same words, stopwords and stems, one vocabulary grown as batches come, and
    each batch's ids as one int32 array with the documents' lengths beside it."""

    def __init__(self, tokenization: Tokenization) -> None:
        self._lower, self._split, self._stopwords, stemmer = tokenization.analyzer()
        self._stem = stemmer.stemWord if stemmer is not None else None
        self._word_ids: dict[str, int] = {}  # word as written (lowered) -> its term id
        self.vocab: dict[str, int] = {}  # term (stem) -> term id
        self.batches: list[tuple[np.ndarray, np.ndarray]] = []  # (tokens (t,), lengths (b,))

    def __len__(self) -> int:
        return sum(len(lengths) for _, lengths in self.batches)

    def add(self, texts: Iterable[str]) -> None:
        word_ids, vocab, stopwords, stem = self._word_ids, self.vocab, self._stopwords, self._stem
        tokens: list[int] = []
        lengths: list[int] = []
        for text in texts:
            before = len(tokens)
            for word in self._split(text.lower() if self._lower else text):
                term = word_ids.get(word)
                if term is None:
                    if word in stopwords:
                        continue
                    term = vocab.setdefault(stem(word) if stem else word, len(vocab))
                    word_ids[word] = term
                tokens.append(term)
            lengths.append(len(tokens) - before)
        self.batches.append((np.array(tokens, dtype=np.int32), np.array(lengths, dtype=np.int64)))


def _pairs(tokens: np.ndarray, lengths: np.ndarray, first_doc: int,
           n_terms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A batch's distinct (document, term) pairs, by document then term, with their counts:
    docs (p,) int64, terms (p,) int64, tf (p,) int64."""
    docs = np.repeat(np.arange(first_doc, first_doc + len(lengths), dtype=np.int64), lengths)
    keys, tf = np.unique(docs * n_terms + tokens, return_counts=True)  # (p,) each
    return keys // n_terms, keys % n_terms, tf


def lucene_scores(terms: CorpusTerms, *, k1: float, b: float) -> dict:
    """bm25s's ``scores`` of ``BM25(method="lucene", k1=k1, b=b).index(corpus)``:
    ``{"data", "indices", "indptr", "num_docs"}``."""
    idf_of = require("bm25s.scoring", "bm25")._score_idf_lucene
    n_terms, n_docs = len(terms.vocab), len(terms)
    doc_lengths = np.concatenate([lengths for _, lengths in terms.batches])  # (n,)
    avg_length = doc_lengths.mean()  # as bm25s: the mean of an int array
    df = np.zeros(n_terms, dtype=np.int64)  # documents holding each term
    for tokens, lengths in terms.batches:
        df += np.bincount(_pairs(tokens, lengths, 0, n_terms)[1], minlength=n_terms)
    idf = np.array([idf_of(int(d), N=n_docs) if d else 0.0 for d in df], dtype=np.float32)
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    data = np.empty(int(indptr[-1]), dtype=np.float32)  # (nnz,) scores, term by term
    indices = np.empty(int(indptr[-1]), dtype=np.int32)  # (nnz,) their documents
    fill = indptr[:-1].copy()  # (V,) the next free slot of each term's column
    first_doc = 0
    for tokens, lengths in terms.batches:
        docs, term, tf = _pairs(tokens, lengths, first_doc, n_terms)
        tf = tf.astype(np.float64)
        tfc = tf / (k1 * ((1 - b) + b * doc_lengths[docs] / avg_length) + tf)  # bm25s's order
        scores = (idf[term] * tfc).astype(np.float32)  # (p,)
        order = np.argsort(term, kind="stable")  # by term; documents stay ascending
        term = term[order]
        counts = np.bincount(term, minlength=n_terms)  # (V,)
        rank = np.arange(len(term)) - (np.cumsum(counts) - counts)[term]  # place in its run
        slots = fill[term] + rank
        indices[slots] = docs[order]
        data[slots] = scores[order]
        fill += counts
        first_doc += len(lengths)
    return {"data": data, "indices": indices, "indptr": indptr, "num_docs": n_docs}


def bm25s_retriever(terms: CorpusTerms, *, k1: float, b: float):
    """A ``bm25s.BM25`` (Lucene) over ``terms``, as ``index()`` would have left it."""
    bm25s = require("bm25s", "bm25")
    retriever = bm25s.BM25(method="lucene", k1=float(k1), b=float(b))
    retriever.scores = lucene_scores(terms, k1=float(k1), b=float(b))
    retriever.vocab_dict = terms.vocab
    retriever.unique_token_ids_set = set(terms.vocab.values())
    retriever.nonoccurrence_array = None
    return retriever
