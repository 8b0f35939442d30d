"""BM25 keyword search over chunk texts, built on bm25s (Lucene scoring)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ragmix._extras import require
from ragmix.errors import BadInputError, CollectionError
from ragmix.retrieval._folders import replace_folder
from ragmix.types import ScoredId

_FORMAT = "ragmix.bm25/1"

# Stopword lists that bm25s ships, by the names bm25s.tokenize accepts.
_STOPWORDS = {
    "en": "STOPWORDS_EN",
    "english": "STOPWORDS_EN",
    "en_plus": "STOPWORDS_EN_PLUS",
    "de": "STOPWORDS_GERMAN",
    "nl": "STOPWORDS_DUTCH",
    "fr": "STOPWORDS_FRENCH",
    "es": "STOPWORDS_SPANISH",
    "pt": "STOPWORDS_PORTUGUESE",
    "it": "STOPWORDS_ITALIAN",
    "ru": "STOPWORDS_RUSSIAN",
    "sv": "STOPWORDS_SWEDISH",
    "no": "STOPWORDS_NORWEGIAN",
    "zh": "STOPWORDS_CHINESE",
    "tr": "STOPWORDS_TURKISH",
    "ko": "STOPWORDS_KOREAN",
    "da": "STOPWORDS_DANISH",
}


@dataclass(frozen=True)
class Tokenization:
    """How texts and queries become terms: lowercase, regex split, drop stopwords, stem.

    The same settings must tokenise the corpus and the queries, so they are
    saved with the index. ``token_pattern`` is scikit-learn's and bm25s's default
    (words of two or more characters).
    """

    stemmer: str | None = "english"  # a PyStemmer algorithm name, or None
    stopwords: str | None = "en"  # a bm25s stopword list name, or None
    lower: bool = True
    token_pattern: str = r"(?u)\b\w\w+\b"

    def __post_init__(self) -> None:
        if self.stopwords is not None and self.stopwords not in _STOPWORDS:
            raise BadInputError(
                f"unknown stopwords {self.stopwords!r}; "
                f"choose one of: {', '.join(_STOPWORDS)}, or None"
            )

    def stopword_list(self) -> list[str]:
        if self.stopwords is None:
            return []
        return list(getattr(require("bm25s.stopwords", "bm25"), _STOPWORDS[self.stopwords]))

    def make_stemmer(self) -> Any:
        """A PyStemmer ``Stemmer`` (it caches stems), or None."""
        if self.stemmer is None:
            return None
        stemmer_module = require("Stemmer", "bm25")
        if self.stemmer not in stemmer_module.algorithms():
            raise BadInputError(
                f"unknown stemmer {self.stemmer!r}; choose one of: "
                f"{', '.join(stemmer_module.algorithms())}, or None"
            )
        return stemmer_module.Stemmer(self.stemmer)

    def analyzer(self) -> Analyzer:
        """The parts that turn text into terms, built once for a corpus or for queries."""
        return Analyzer(self.lower, re.compile(self.token_pattern).findall,
                        frozenset(self.stopword_list()), self.make_stemmer())


class Analyzer(NamedTuple):
    """:meth:`Tokenization.analyzer`: lowercase?, the regex splitter, stopwords, stemmer."""

    lower: bool
    split: Callable[[str], list[str]]
    stopwords: frozenset[str]
    stemmer: Any  # a PyStemmer Stemmer, or None


class _QueryTerms:
    """Turns a query into bm25s vocabulary ids exactly as bm25s.tokenize does for the corpus."""

    def __init__(self, tokenization: Tokenization, vocab: dict[str, int]) -> None:
        self._lower, self._split, self._stopwords, stemmer = tokenization.analyzer()
        self._stem = stemmer.stemWords if stemmer is not None else None
        self._vocab = vocab

    def __call__(self, query: str) -> list[int]:
        if self._lower:
            query = query.lower()
        words = [w for w in self._split(query) if w not in self._stopwords]
        if self._stem is not None:
            words = self._stem(words)
        vocab = self._vocab
        return [vocab[w] for w in words if w in vocab]  # unknown terms score nothing


class BM25Index:
    """Lucene BM25 over (chunk id, text) pairs; immutable, rebuilt when the texts change.

    Scores are those of bm25s with ``method="lucene"``: for each query term t,
    ``idf(t) * tf / (tf + k1 * (1 - b + b * len(d) / avgdl))`` with
    ``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))`` (Kamphuis et al., ECIR 2020).

    >>> import tempfile
    >>> index = BM25Index.build(np.array([10, 11]), ["Cats are running.", "A dog runs."])
    >>> [hit.chunk_id for hit in index.search("run", 5)]  # stemmed; ties by chunk id
    [10, 11]
    >>> [hit.chunk_id for hit in index.search("dogs", 5)]
    [11]
    >>> tmp = tempfile.TemporaryDirectory()
    >>> index.save(tmp.name)
    >>> BM25Index.load(tmp.name).search("run", 5) == index.search("run", 5)
    True
    >>> tmp.cleanup()
    """

    def __init__(
        self, ids: np.ndarray, retriever: Any, *, k1: float, b: float, tokenization: Tokenization
    ) -> None:
        """Wrap a built bm25s retriever (None: empty corpus); use :meth:`build` or :meth:`load`."""
        self._ids = ids  # (n,) int64: row i of the bm25s index is chunk ids[i]
        self._retriever = retriever
        self.k1 = k1
        self.b = b
        self.tokenization = tokenization
        vocab = retriever.vocab_dict if retriever is not None else {}
        self._terms = _QueryTerms(tokenization, vocab)

    @classmethod
    def build(
        cls,
        ids: np.ndarray,
        texts: Sequence[str],
        *,
        k1: float = 1.2,
        b: float = 0.75,
        stemmer: str | None = "english",
        stopwords: str | None = "en",
    ) -> BM25Index:
        """Index ``texts`` under ``ids`` (n,) int64; an empty corpus finds nothing."""
        return cls.build_batches([(ids, texts)], k1=k1, b=b, stemmer=stemmer,
                                 stopwords=stopwords)

    @classmethod
    def build_batches(
        cls,
        batches: Iterable[tuple[np.ndarray, Sequence[str]]],
        *,
        k1: float = 1.2,
        b: float = 0.75,
        stemmer: str | None = "english",
        stopwords: str | None = "en",
    ) -> BM25Index:
        """:meth:`build` over ``(ids, texts)`` batches read one at a time (a store's
        ``iter_texts()``): each batch is tokenized as it comes and only its term ids are
        kept, 4 bytes a term, and the score matrix is filled in place
        (:mod:`ragmix.retrieval.bm25_build`), so memory never holds the corpus's text.

        >>> batches = [(np.array([10]), ["Cats are running."]), (np.array([11]), ["A dog runs."])]
        >>> one = BM25Index.build(np.array([10, 11]), ["Cats are running.", "A dog runs."])
        >>> BM25Index.build_batches(batches).search("run", 5) == one.search("run", 5)
        True
        """
        if not k1 >= 0:
            raise BadInputError(f"k1 must be >= 0, got {k1!r}")
        if not 0 <= b <= 1:
            raise BadInputError(f"b must be in [0, 1], got {b!r}")
        from ragmix.retrieval.bm25_build import CorpusTerms, bm25s_retriever

        tokenization = Tokenization(stemmer=stemmer, stopwords=stopwords)
        terms = CorpusTerms(tokenization)
        id_parts = []
        for batch_ids, texts in batches:
            batch_ids = np.asarray(batch_ids, dtype=np.int64).ravel()  # (b,)
            if len(batch_ids) != len(texts):
                raise BadInputError(f"build needs one id per text, got {len(batch_ids)} ids "
                                    f"and {len(texts)} texts")
            id_parts.append(batch_ids)
            terms.add(texts)
        ids = np.concatenate(id_parts) if id_parts else np.zeros(0, dtype=np.int64)  # (n,)
        if len(np.unique(ids)) != len(ids):
            raise BadInputError("ids must be unique")
        # bm25s cannot search a corpus without a single term
        retriever = bm25s_retriever(terms, k1=k1, b=b) if terms.vocab else None
        return cls(ids, retriever, k1=float(k1), b=float(b), tokenization=tokenization)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> np.ndarray:
        """(n,) int64: the chunk ids, in build order."""
        return self._ids

    def _mask(self, allowed_ids: np.ndarray | None) -> np.ndarray | None:
        if allowed_ids is None:
            return None
        allowed = np.asarray(allowed_ids, dtype=np.int64).ravel()  # (m,)
        return np.isin(self._ids, allowed).astype(np.float32)  # (n,) 1 = allowed

    def _top(self, query: str, k: int, mask: np.ndarray | None) -> list[ScoredId]:
        term_ids = self._terms(query)
        if not term_ids:
            return []
        scores = self._retriever.get_scores_from_ids(term_ids, weight_mask=mask)  # (n,)
        hits = np.flatnonzero(scores > 0)  # (h,) Lucene idf > 0: a hit shares a term with the query
        if len(hits) > k:
            hit_scores = scores[hits]  # (h,)
            kth = np.partition(hit_scores, len(hits) - k)[len(hits) - k]  # k-th best score
            hits = hits[hit_scores >= kth]  # (>= k,) keeps every tie at the cut
        order = np.lexsort((self._ids[hits], -scores[hits]))[:k]  # score desc, then chunk id
        hits = hits[order]  # (<= k,)
        return [
            ScoredId(chunk_id, score)
            for chunk_id, score in zip(self._ids[hits].tolist(), scores[hits].tolist())
        ]

    def search(
        self, query: str, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> list[ScoredId]:
        """The ``k`` best chunks for ``query`` with score > 0, best first (ties by chunk id).

        ``allowed_ids`` keeps only those chunk ids (exactly, through bm25s's ``weight_mask``).
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise BadInputError(f"k must be an integer > 0, got {k!r}")
        if self._retriever is None:
            return []
        return self._top(query, int(k), self._mask(allowed_ids))

    def search_batch(
        self, queries: Sequence[str], k: int, *, allowed_ids: np.ndarray | None = None
    ) -> list[list[ScoredId]]:
        """:meth:`search` for each query, sharing the ``allowed_ids`` mask."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            raise BadInputError(f"k must be an integer > 0, got {k!r}")
        if self._retriever is None:
            return [[] for _ in queries]
        mask = self._mask(allowed_ids)
        return [self._top(query, int(k), mask) for query in queries]

    # -- persistence --------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to the folder ``path``, replacing it whole.

        Files go to a sibling temporary folder that is then renamed into place,
        so a reader sees the old index or the new one, never a mix. (Between the
        two renames ``path`` is briefly absent; a crash there leaves the old index
        at ``.<name>.old-*`` next to it.)
        """
        def write(tmp: Path) -> None:
            np.save(tmp / "ids.npy", self._ids)
            if self._retriever is not None:
                self._retriever.save(tmp / "bm25s", show_progress=False)
            params = {
                "format": _FORMAT,
                "k1": self.k1,
                "b": self.b,
                "tokenization": asdict(self.tokenization),
                "empty": self._retriever is None,
            }
            (tmp / "params.json").write_text(json.dumps(params, indent=2), encoding="utf-8")

        replace_folder(Path(path), write)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False) -> BM25Index:
        """Read an index written by :meth:`save`; ``mmap`` maps the score arrays, not reads them."""
        path = Path(path)
        if not (path / "params.json").exists():
            raise BadInputError(f"no BM25 index at {str(path)!r}; build and save one first")
        params = json.loads((path / "params.json").read_text(encoding="utf-8"))
        if params.get("format") != _FORMAT:
            raise CollectionError(f"{str(path)!r} is not a {_FORMAT} index; rebuild it")
        ids = np.load(path / "ids.npy")
        retriever = None
        if not params["empty"]:
            bm25s = require("bm25s", "bm25")
            retriever = bm25s.BM25.load(path / "bm25s", mmap=mmap, show_progress=False)
            if retriever.scores["num_docs"] != len(ids):
                raise CollectionError(
                    f"{str(path)!r} has {len(ids)} ids for {retriever.scores['num_docs']} "
                    "documents; rebuild it"
                )
        tokenization = Tokenization(**params["tokenization"])
        return cls(ids, retriever, k1=params["k1"], b=params["b"], tokenization=tokenization)
