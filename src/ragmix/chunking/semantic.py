"""Semantic chunking: cut where the meaning of adjacent sentences shifts, under a token cap.

Sentences are embedded with a bi-encoder; a chunk ends where the cosine
distance between neighbouring sentences is unusually large for the document
(above a percentile of its distances, as in Greg Kamradt's "5 levels of text
splitting" and LlamaIndex's ``SemanticSplitterNodeParser``). A chunk is then
split further until it fits ``max_tokens`` of the encoder's tokens, so the
model that embeds it never truncates it.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from ragmix.chunking._spans import check_positive_int, spans_to_chunks
from ragmix.chunking.sentences import sentence_spans
from ragmix.chunking.tokens import MINILM_NAMES, TokenCounter, token_counter_for
from ragmix.errors import BadInputError
from ragmix.types import Chunk

if TYPE_CHECKING:
    from ragmix.encoders.base import Encoder

Span = tuple[int, int]
_HASHING = re.compile(r"hashing-[1-9][0-9]*")


def boundary_distances(embeddings: np.ndarray, window: int = 1) -> np.ndarray:
    """Cosine distance across each sentence boundary: (n, D) -> (n - 1,).

    Boundary ``i`` lies between sentences ``i`` and ``i + 1``; its distance is
    ``1 - cos(left, right)`` where ``left`` sums the (up to) ``window``
    sentence vectors before it and ``right`` the ``window`` after it. With
    ``window > 1`` this is TextTiling's block comparison (Hearst, 1997), which
    smooths one-sentence noise as Kamradt's ``buffer_size`` does, without
    embedding concatenated sentences again. A zero vector counts as cosine 0.

    >>> e = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> boundary_distances(e).tolist()
    [0.0, 1.0]
    >>> boundary_distances(e, window=2).round(3).tolist()
    [0.293, 1.0]
    """
    n = len(embeddings)
    if n < 2:
        return np.zeros(0)
    e = np.asarray(embeddings, dtype=np.float64)  # (n, D)
    # Shifted sums, not differences of a running sum, which cancel badly.
    left = np.zeros((n - 1, e.shape[1]))  # (n - 1, D): sentences i - window + 1 .. i
    right = np.zeros((n - 1, e.shape[1]))  # (n - 1, D): sentences i + 1 .. i + window
    for k in range(min(window, n - 1)):
        left[k:] += e[: n - 1 - k]  # boundary i gets sentence i - k
        right[: n - 1 - k] += e[k + 1 :]  # boundary i gets sentence i + 1 + k
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)  # (n - 1,)
    dots = np.einsum("id,id->i", left, right)  # (n - 1,)
    cos = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)
    return 1.0 - np.clip(cos, -1.0, 1.0)


def breakpoints(distances: np.ndarray, percentile: float) -> list[int]:
    """Boundaries whose distance is above the ``percentile``-th percentile of all of them.

    Kamradt's rule: a shift counts relative to the document's own distances,
    so the threshold needs no tuning per encoder. Equal distances give none.

    >>> breakpoints(np.array([0.1, 0.9, 0.2, 0.15]), 95.0)
    [1]
    """
    if len(distances) == 0:
        return []
    threshold = np.percentile(distances, percentile)
    return [int(i) for i in np.flatnonzero(distances > threshold)]


def group_sentences(distances: np.ndarray, sizes: Sequence[int], *, percentile: float,
                    budget: int) -> list[Span]:
    """Sentence ranges ``[lo, hi)``: cut at the breakpoints, then until each fits ``budget``.

    ``sizes`` are the sentences' token counts. A range over ``budget`` is split
    at its most distant (least similar) boundary, recursively; a single
    sentence is returned as it is, however long (the caller cuts it).

    >>> d = np.array([0.1, 0.9, 0.2])
    >>> group_sentences(d, [3, 3, 3, 3], percentile=95.0, budget=100)
    [(0, 2), (2, 4)]
    >>> group_sentences(d, [3, 3, 3, 3], percentile=95.0, budget=4)
    [(0, 1), (1, 2), (2, 3), (3, 4)]
    """
    n = len(sizes)
    if n == 0:
        return []
    prefix = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])  # (n + 1,)
    edges = [0] + [i + 1 for i in breakpoints(distances, percentile)] + [n]
    out: list[Span] = []
    for lo, hi in zip(edges, edges[1:]):
        stack = [(lo, hi)]  # a stack, not recursion: a group may hold thousands of sentences
        while stack:
            a, b = stack.pop()
            if b - a == 1 or prefix[b] - prefix[a] <= budget:
                out.append((a, b))
                continue
            i = a + int(np.argmax(distances[a : b - 1]))  # split into [a, i] and [i + 1, b)
            stack += [(i + 1, b), (a, i + 1)]  # the left part pops first: order is kept
    return out


def cut_at_tokens(text: str, counter: TokenCounter, budget: int) -> list[Span]:
    """Contiguous spans covering ``text``, each of at most ``budget`` tokens once re-tokenized.

    The pieces aim at equal sizes (300 tokens under a cap of 254 make two of
    150, not 254 and 46). Cuts fall between tokens, at whitespace between them
    where one is in reach (so words stay whole), else inside a word, and at a
    character when one token alone re-tokenizes to more than ``budget`` (a
    WordPiece suffix may).

    >>> from ragmix.chunking.tokens import WhitespaceTokens
    >>> cut_at_tokens("a bb ccc dd e", WhitespaceTokens(), 2)
    [(0, 5), (5, 12), (12, 13)]
    """
    def fits(start: int, end: int) -> bool:
        return counter.counts([text[start:end]])[0] <= budget

    tokens = counter.spans(text)
    n = len(tokens)
    starts = [s for s, _ in tokens] + [len(text)]  # the places a cut may go, then the end
    step = -(-n // -(-n // budget)) if n else budget  # ceil(n / pieces), pieces = ceil(n / budget)
    out: list[Span] = []
    pos, a = 0, 0  # the piece starts at pos; tokens[a] is the first to start at or after it
    while pos < len(text):
        if a + budget >= n and fits(pos, len(text)):
            out.append((pos, len(text)))
            break
        last = min(a + step, n - 1)  # cut before tokens[j] for some j <= last
        gaps = [j for j in range(last, a, -1) if tokens[j - 1][1] < tokens[j][0]]
        j = gaps[0] if gaps else last
        while j >= a and (starts[j] <= pos or not fits(pos, starts[j])):
            j -= 1
        if j >= a:
            cut = starts[j]
        else:  # not even one token fits: the longest prefix of it that does
            limit = next(s for s in starts[a:] if s > pos)
            cut = next((c for c in range(limit - 1, pos, -1) if fits(pos, c)), pos + 1)
        out.append((pos, cut))
        pos, a = cut, bisect_left(starts, cut, lo=a, hi=n)
    return out


@dataclass(frozen=True, init=False)
class SemanticChunker:
    """Chunks of whole sentences, cut where adjacent sentences' embeddings drift apart.

    - ``encoder``: an encoder spec (default the packaged MiniLM, the family a
      collection embeds with), or a loaded :class:`~ragmix.encoders.base.Encoder`
      whose ``name`` is one. A spec is loaded when the first document is
      chunked, so opening a collection to search it loads nothing.
    - ``max_tokens``: the cap, in the encoder's tokens and counting the special
      tokens it adds (MiniLM's [CLS] and [SEP]), so that 256, the packaged
      MiniLM's ``max_seq_length``, means "never truncated". Encoders without a
      tokenizer (hashing) count whitespace-separated words.
    - ``percentile``: a chunk ends at a boundary whose distance is above this
      percentile of the document's boundary distances; 95 cuts at about 5% of
      them, at least once in three sentences or more unless the distances tie.
    - ``window``: sentences on each side of a boundary whose vectors are
      compared; 1 compares adjacent sentences.

    A chunk over the cap is split at its least similar boundary, recursively;
    a sentence over it is cut between tokens. Cost: one ``encode_documents``
    call per document for all its sentences (none for one or two sentences);
    :meth:`chunk_many` makes one call for many documents.

    >>> chunker = SemanticChunker("hashing-64", max_tokens=6)
    >>> text = "Cats purr. Cats purr loudly. Stocks fell. Stocks fell sharply today again."
    >>> [c.text for c in chunker.chunk("d", text)]
    ['Cats purr. Cats purr loudly.', 'Stocks fell.', 'Stocks fell sharply today again.']
    """

    encoder: str
    max_tokens: int
    percentile: float
    window: int

    def __init__(self, encoder: str | Encoder = "minilm", *, max_tokens: int = 256,
                 percentile: float = 95.0, window: int = 1) -> None:
        from ragmix.encoders import canonical_name

        check_positive_int("max_tokens", max_tokens)
        check_positive_int("window", window)
        if (isinstance(percentile, bool) or not isinstance(percentile, (int, float))
                or not 0 < percentile < 100):
            raise BadInputError(
                f"percentile must be a number strictly between 0 and 100, got {percentile!r}; "
                "95 (the default) cuts at the 5% least similar sentence boundaries"
            )
        if isinstance(encoder, str):
            spec, loaded = canonical_name(encoder), None
            _check_spec(encoder, spec)
        elif callable(getattr(encoder, "encode_documents", None)):
            spec, loaded = canonical_name(str(encoder.name)), encoder
        else:
            raise BadInputError(
                f"encoder must be an encoder spec or an Encoder, got {encoder!r}; "
                "use e.g. 'minilm' or 'hashing-256'"
            )
        # Frozen: set through object.__setattr__, as dataclasses do themselves.
        object.__setattr__(self, "encoder", spec)
        object.__setattr__(self, "max_tokens", max_tokens)
        object.__setattr__(self, "percentile", float(percentile))
        object.__setattr__(self, "window", window)
        # Loaded parts live outside the fields: equality and settings ignore them.
        object.__setattr__(self, "_encoder", loaded)
        object.__setattr__(self, "_counter", None)

    def __reduce__(self):
        # A copy or pickle carries the settings, never a loaded model.
        return (partial(SemanticChunker, self.encoder, max_tokens=self.max_tokens,
                        percentile=self.percentile, window=self.window), ())

    def chunk(self, doc_id: str, text: str) -> list[Chunk]:
        return self.chunk_many([(doc_id, text)])[0]

    def chunk_many(self, documents: Sequence[tuple[str, str]]) -> list[list[Chunk]]:
        """Chunk ``(doc_id, text)`` pairs, the sentences of them all embedded in one call.

        The chunks are those :meth:`chunk` gives each document. With MiniLM on CPU,
        windows of 64 SciFact abstracts took 2.4x less CPU time than one call per
        abstract (small batches spend their time in overhead, not in the model).
        """
        spans = [sentence_spans(text) for _, text in documents]
        if not any(spans):
            return [[] for _ in documents]
        counter = self._token_counter()
        budget = self.max_tokens - counter.overhead
        if budget < 1:
            raise BadInputError(
                f"max_tokens must be > {counter.overhead} for encoder {self.encoder!r}, which "
                f"adds {counter.overhead} special tokens to every text; got {self.max_tokens}"
            )
        sentences = [[text[s:e] for s, e in doc] for doc, (_, text) in zip(spans, documents)]
        sizes = counter.counts([sentence for doc in sentences for sentence in doc])
        out, pos = [], 0
        for (doc_id, text), doc, distances in zip(documents, spans, self._distances(sentences)):
            doc_sizes, pos = sizes[pos : pos + len(doc)], pos + len(doc)
            pieces = self._pieces(text, doc, distances, doc_sizes, counter, budget)
            out.append(spans_to_chunks(doc_id, text, pieces))
        return out

    def _pieces(self, text: str, spans: list[Span], distances: np.ndarray, sizes: list[int],
                counter: TokenCounter, budget: int) -> list[Span]:
        """The character spans of one document's chunks, from its sentences."""
        out: list[Span] = []
        for lo, hi in group_sentences(distances, sizes, percentile=self.percentile,
                                      budget=budget):
            start, end = spans[lo][0], spans[hi - 1][1]
            if hi - lo == 1 and sizes[lo] > budget:
                cuts = cut_at_tokens(text[start:end], counter, budget)
                out += [(start + s, start + e) for s, e in cuts]
            else:
                out.append((start, end))
        return out

    def _distances(self, documents: list[list[str]]) -> list[np.ndarray]:
        """Each document's boundary distances, from one encode call for all their sentences."""
        # Two sentences' lone distance is its own percentile, never above it, and a
        # cap can only split them at their one boundary: they need no vectors.
        todo = [sentences for sentences in documents if len(sentences) > 2]
        flat = [sentence for sentences in todo for sentence in sentences]
        vectors = self._loaded_encoder().encode_documents(flat) if flat else None  # (m, dim)
        out, pos = [], 0
        for sentences in documents:
            n = len(sentences)
            if n > 2:
                out.append(boundary_distances(vectors[pos : pos + n], self.window))  # (n - 1,)
                pos += n
            else:
                out.append(np.zeros(max(n - 1, 0)))
        return out

    def _loaded_encoder(self) -> Encoder:
        if self._encoder is None:
            from ragmix.encoders import load_encoder

            object.__setattr__(self, "_encoder", load_encoder(self.encoder))
        return self._encoder

    def _token_counter(self) -> TokenCounter:
        if self._counter is None:
            object.__setattr__(self, "_counter", token_counter_for(self.encoder))
        return self._counter

    def settings(self) -> dict[str, object]:
        return {"name": "semantic", "encoder": self.encoder, "max_tokens": self.max_tokens,
                "percentile": self.percentile, "window": self.window}


def _check_spec(given: str, spec: str) -> None:
    """Refuse a spec :func:`~ragmix.encoders.load_encoder` could never load, before any load.

    A path is accepted unchecked: a collection whose model folder has moved
    must still open for search; adding documents then names the missing folder.
    """
    if spec in MINILM_NAMES or _HASHING.fullmatch(spec) or "/" in spec or "\\" in spec:
        return
    from pathlib import Path

    if not Path(spec).is_dir():
        raise BadInputError(
            f"unknown encoder {given!r} for the semantic chunker; use 'minilm', 'minilm-int8', "
            "'hashing-DIM' or a local sentence-transformers folder"
        )

