"""Frozen value types passed between ragmix components."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Document:
    """One source document, as loaded, before chunking.

    ``doc_id`` is the collection-wide key: the resolved file path for a file,
    the ``_id`` field for a row of a BEIR ``corpus.jsonl``.
    """

    doc_id: str
    text: str
    source: str
    title: str = ""
    mtime: float = 0.0
    content_hash: str = ""


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, with the reason shown to the user."""

    source: str
    reason: str


@dataclass(frozen=True)
class Chunk:
    """A passage cut from a document; ``text == document.text[start:end]``."""

    doc_id: str
    index: int  # position of the chunk within its document
    start: int  # character offset into Document.text
    end: int
    text: str


@dataclass(frozen=True)
class ScoredId:
    """A retriever's raw result: a chunk id and its score (higher is better)."""

    chunk_id: int
    score: float


@dataclass(frozen=True)
class Hit:
    """A retrieved passage with its score and retriever probability p(z|x).

    ``prob`` is softmax(score) over the returned top-k, as in Lewis et al. (2020).
    A reranked hit keeps its first stage's score in ``retrieval_score``;
    ``score`` is then the reranker's (see :mod:`ragmix.rerank`).
    """

    chunk_id: int
    doc_id: str
    text: str
    score: float
    prob: float
    rank: int  # 1-based
    title: str = ""
    source: str = ""
    start: int = 0
    end: int = 0
    retrieval_score: float | None = None  # the first stage's score, once reranked


@dataclass(frozen=True)
class Quote:
    """Where a grounded answer stands, verbatim: ``hit.text[start:end]`` of hit number ``hit``.

    ``hit`` is 1-based, as in the [n] citations; ``doc_start``/``doc_end``
    are the same characters in the whole document (``hit.start + start``).
    """

    hit: int
    start: int
    end: int
    doc_id: str = ""
    doc_start: int = 0
    doc_end: int = 0


@dataclass(frozen=True)
class Answer:
    """A generated answer, the passages it was given, and where it came from.

    "stuff" answers cite passages as [n] (``cited``). RAG-Sequence and
    RAG-Token answers (Lewis et al., 2020) carry the retriever prior p(z|x)
    and the posterior p(z|x,y) over ``hits``, and RAG-Token answers also the
    per-token posterior p(z_i | x, y_<=i): which passage each answer token
    leaned on (``tokens[i]`` with ``token_posteriors[i]``, one value per hit).
    Grounded answers (``decoding="grounded"``) are verbatim spans of their
    passages, and ``quotes`` say exactly where, best-supported first; with a
    calibration they carry a ``confidence``, and below the threshold they
    abstain (``abstained``, the span kept in ``guess``; see
    :mod:`ragmix.marginal.confidence`).
    """

    question: str
    text: str
    hits: tuple[Hit, ...]
    cited: tuple[int, ...] = field(default=())  # 1-based passage numbers found in text
    mode: str = "stuff"  # stuff | rag-sequence | rag-token
    logprob: float | None = None  # log p(y|x) under the mode's marginal
    prior: tuple[float, ...] = field(default=())  # p(z|x) per hit
    posterior: tuple[float, ...] = field(default=())  # p(z|x,y) per hit
    tokens: tuple[str, ...] = field(default=())  # the answer's tokens as text
    token_posteriors: tuple[tuple[float, ...], ...] = field(default=())  # (T, K)
    decoding: str = "free"  # free | thorough | fast | grounded
    quotes: tuple[Quote, ...] = field(default=())  # grounded answers: where the text stands
    # grounded answers: what their decoding says of them (ragmix.marginal.confidence.SIGNALS)
    signals: Mapping[str, float] = field(default_factory=dict)
    confidence: float | None = None  # calibrated P(right); None without a calibration
    abstained: bool = False  # True: text says the collection does not say; see guess
    guess: str = ""  # an abstaining answer's withheld best span

    @property
    def sources(self) -> tuple[Hit, ...]:
        """The hits behind the answer, best first.

        By posterior p(z|x,y) when the answer has one; otherwise the cited
        hits in citation order, or all hits if the answer cites none.
        """
        if self.posterior:
            order = sorted(range(len(self.hits)), key=lambda i: -self.posterior[i])
            return tuple(self.hits[i] for i in order)
        if not self.cited:
            return self.hits
        return tuple(self.hits[n - 1] for n in self.cited if 0 < n <= len(self.hits))
