"""The span automaton accepts exactly the passage's spans, in every tokenization."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragmix.errors import BadInputError
from ragmix.generation.spans import SpanAutomaton, TokenVocabulary, vocabulary_of

WORDS = ["Paris", "is", "the", "capital", "of", "France", "1971", "café", "x"]
# every single byte the texts use, plus longer pieces, some with a leading space
BASE = sorted({bytes([b]) for w in WORDS + [" ", ",", "."] for b in w.encode()})
PIECES = BASE + [b" Paris", b"Par", b"is", b" is", b" the", b"the", b" cap", b"ital", b"19",
                 b"71", b" caf", "é".encode(), b", ", b"Fr", b"ance"]


def accepted(automaton: SpanAutomaton, max_bytes: int) -> dict[bytes, int]:
    """Every ended answer of at most ``max_bytes`` bytes -> how many token sequences spell it."""
    found: dict[bytes, int] = {}
    stack = [(automaton.start(), b"")]
    while stack:
        state, text = stack.pop()
        if automaton.can_end(state):
            found[text] = found.get(text, 0) + 1
        for token, nxt in automaton.step(state).items():
            piece = automaton.vocabulary.pieces[token]
            if len(text) + len(piece) <= max_bytes:
                stack.append((nxt, text + piece))
    return found


def brute_force_spans(text: str, max_bytes: int) -> set[bytes]:
    """Substrings that start at a word start (or the space before it) and end at a boundary."""
    data = text.encode()

    def wordy(i):
        return data[i] >= 0x80 or chr(data[i]).isalnum()

    def starts(i):
        if data[i : i + 1].isspace() or 0x80 <= data[i] < 0xC0:
            return False
        return i == 0 or not (wordy(i - 1) and wordy(i))

    def ends(j):
        if j < len(data) and 0x80 <= data[j] < 0xC0:
            return False
        return j == len(data) or not (wordy(j - 1) and wordy(j))

    out = set()
    for i in range(len(data)):
        if not starts(i):
            continue
        for s in {i, i - 1} if i > 0 and data[i - 1 : i] == b" " else {i}:
            for j in range(i + 1, min(len(data), s + max_bytes) + 1):
                if ends(j) and not data[j - 1 : j].isspace():
                    out.add(data[s:j])
    return out


def segmentations(data: bytes, pieces: list[bytes]) -> int:
    ways = [1] + [0] * len(data)
    for end in range(1, len(data) + 1):
        ways[end] = sum(ways[end - len(p)] for p in set(pieces)
                        if len(p) <= end and data[end - len(p) : end] == p)
    return ways[-1]


passages = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(
    lambda words: " ".join(words).replace(" of", ", of"))


@settings(max_examples=60, deadline=None)
@given(text=passages)
def test_accepts_exactly_the_spans_in_every_tokenization(text):
    automaton = SpanAutomaton([text], TokenVocabulary(PIECES))
    found = accepted(automaton, max_bytes=12)
    assert set(found) == brute_force_spans(text, 12)
    for span, count in found.items():
        assert count == segmentations(span, PIECES), span


@settings(max_examples=60, deadline=None)
@given(text=passages, other=passages)
def test_spans_point_at_the_text(text, other):
    automaton = SpanAutomaton([text, other], TokenVocabulary(PIECES))
    stack = [(automaton.start(), b"")]
    while stack:
        state, spelled = stack.pop()
        if automaton.can_end(state):
            spans = automaton.spans(state)
            assert spans
            for span in spans:
                source = [text, other][span.text]
                assert source[span.start : span.end] == spelled.decode().strip()
        for token, nxt in automaton.step(state).items():
            piece = automaton.vocabulary.pieces[token]
            if len(spelled) + len(piece) <= 10:
                stack.append((nxt, spelled + piece))


def test_never_ends_inside_a_word_or_a_character():
    automaton = SpanAutomaton(["café is tall"], TokenVocabulary(PIECES + [b"caf\xc3"]))
    found = accepted(automaton, max_bytes=8)
    assert b"caf" not in found and b"caf\xc3" not in found
    assert "café".encode() in found and b" is" in found


def test_special_tokens_are_never_allowed():
    vocab = TokenVocabulary([None, b"a", b" b"])
    automaton = SpanAutomaton(["a b"], vocab)
    assert 0 not in automaton.step(automaton.start())


def test_texts_must_be_a_list():
    with pytest.raises(BadInputError, match="list of strings"):
        SpanAutomaton("a text", TokenVocabulary([b"a"]))


def byte_level_tokenizer():
    """A small byte-level BPE tokenizer trained here (GPT-2's scheme), as a transformers one."""
    pytest.importorskip("transformers")
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    corpus = ["The Denver Broncos won Super Bowl 50 in 2016, at Levi's Stadium.",
              "Paris is the capital of France; the café is on the corner."] * 20
    bpe.train_from_iterator(corpus, vocab_size=300, min_frequency=1,
                            special_tokens=["<pad>", "<eos>"])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>")


def test_byte_level_vocabulary_spells_what_the_tokenizer_decodes():
    tokenizer = byte_level_tokenizer()
    vocab = vocabulary_of(tokenizer)
    assert vocab is vocabulary_of(tokenizer)  # cached
    assert vocab.pieces[tokenizer.pad_token_id] is None
    text = "the café at Levi's Stadium, 2016"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert b"".join(vocab.pieces[i] for i in ids).decode() == text
    # the passage's own tokenization is one of the accepted ones
    automaton = SpanAutomaton([text], vocab)
    state = automaton.start()
    for i in ids:
        state = automaton.step(state)[i]
    assert automaton.spans(state)[0].end == len(text)


def test_wordpiece_is_refused_with_the_reason():
    from tiny_models import minilm_tokenizer

    with pytest.raises(BadInputError, match="WordPiece"):
        vocabulary_of(minilm_tokenizer())
