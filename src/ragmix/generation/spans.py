"""Verbatim spans of passages as a constraint on token ids: what grounded decoding may emit next.

Grounded decoding lets a generator write only a span copied from its
passages, then stop. The constraint works on bytes, not on the passage's own
tokenization: the same text tokenizes differently at an answer's start than
inside a passage (" Denver" is one token after a space, "Den" + "ver" at the
start of a line), so a token is allowed whenever its bytes continue the text
at one of the places the answer can still be. Every tokenization of a span is
therefore reachable, and nothing else is.

An answer may start at any word start (or at the space before one) and may
end only at a word boundary, never inside a word or a UTF-8 character.

>>> vocab = TokenVocabulary([b"Par", b"is", b" is", b" the", b" capital", b"."])
>>> spans = SpanAutomaton(["Paris is the capital."], vocab)
>>> state = spans.start()
>>> sorted(spans.step(state))  # every token that starts a word, or a space before one
[0, 1, 2, 3, 4, 5]
>>> state = spans.step(state)[0]      # "Par"
>>> spans.can_end(state), sorted(spans.step(state))   # inside "Paris": go on with "is"
(False, [1])
>>> state = spans.step(state)[1]
>>> spans.can_end(state), spans.spans(state)
(True, [Span(text=0, start=0, end=5)])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ragmix.errors import BadInputError

_UTF8_CONTINUATION = range(0x80, 0xC0)
_SPACE = frozenset(b" \t\n\r\f\v")


@dataclass(frozen=True)
class Span:
    """Characters ``start:end`` of text number ``text``, white space trimmed."""

    text: int
    start: int
    end: int


@dataclass(frozen=True)
class SpanState:
    """Where an answer of ``length`` bytes can still be: (text, start byte) pairs."""

    length: int
    places: frozenset[tuple[int, int]]


class TokenVocabulary:
    """Each token id's bytes, indexed so that the tokens a byte string starts with are quick to list.

    ``pieces[i]`` is token i's bytes, or None for special tokens (never part
    of a span). Build it from a tokenizer with :func:`vocabulary_of`.
    """

    def __init__(self, pieces: Sequence[bytes | None]) -> None:
        self.pieces = list(pieces)
        # every prefix of every piece -> the ids whose piece is exactly it (often none):
        # a flat trie, so a walk along a text stops as soon as no token can match
        self._prefixes: dict[bytes, list[int]] = {}
        for token, piece in enumerate(self.pieces):
            if not piece:
                continue
            for n in range(1, len(piece)):
                self._prefixes.setdefault(piece[:n], [])
            self._prefixes.setdefault(piece, []).append(token)

    def __len__(self) -> int:
        return len(self.pieces)

    def tokens_at(self, data: bytes, at: int) -> Iterable[tuple[int, int]]:
        """(token id, its length in bytes) for every token whose bytes start ``data[at:]``."""
        prefixes = self._prefixes
        for end in range(at + 1, len(data) + 1):
            ids = prefixes.get(data[at:end])
            if ids is None:
                return
            for token in ids:
                yield token, end - at


class SpanAutomaton:
    """The token sequences that spell a verbatim span of one of ``texts``, ended at a word boundary.

    States are :class:`SpanState`; :meth:`step` lists the allowed next tokens
    and the state each leads to, :meth:`can_end` says whether the answer may
    stop here, and :meth:`spans` where it stands in the texts (character offsets).
    """

    def __init__(self, texts: Sequence[str], vocabulary: TokenVocabulary) -> None:
        if isinstance(texts, str):
            raise BadInputError("texts must be a list of strings, not a string")
        self.texts = list(texts)
        self.vocabulary = vocabulary
        self._data = [t.encode("utf-8") for t in self.texts]
        self._chars = [_char_offsets(t) for t in self.texts]

    def start(self) -> SpanState:
        """The state before the first token: every word start, and the space before one."""
        places = set()
        for t, data in enumerate(self._data):
            for s in range(len(data)):
                if _starts_word(data, s):
                    places.add((t, s))
                    if s > 0 and data[s - 1] in _SPACE:
                        places.add((t, s - 1))
        return SpanState(0, frozenset(places))

    def step(self, state: SpanState) -> dict[int, SpanState]:
        """The allowed next tokens, each with the state it leads to."""
        grouped: dict[int, set[tuple[int, int]]] = {}
        size: dict[int, int] = {}
        for t, s in state.places:
            data = self._data[t]
            for token, n in self.vocabulary.tokens_at(data, s + state.length):
                grouped.setdefault(token, set()).add((t, s))
                size[token] = n
        return {tok: SpanState(state.length + size[tok], frozenset(p))
                for tok, p in grouped.items()}

    def can_end(self, state: SpanState) -> bool:
        """True when the answer so far is a whole, non-empty span at one of its places."""
        return any(self._ends_well(t, s, state.length) for t, s in state.places)

    def spans(self, state: SpanState) -> list[Span]:
        """The places an ended answer stands, in text order, as trimmed character spans."""
        out = []
        for t, s in sorted(state.places):
            if not self._ends_well(t, s, state.length):
                continue
            data, chars = self._data[t], self._chars[t]
            start, end = s, s + state.length
            while start < end and data[start] in _SPACE:
                start += 1
            out.append(Span(t, chars[start], chars[end]))
        return out

    def _ends_well(self, t: int, s: int, length: int) -> bool:
        data, end = self._data[t], s + length
        if length == 0 or not data[s:end].strip():
            return False
        if data[end - 1] in _SPACE:
            return False  # "Paris " is "Paris"; let only one of them end
        if end < len(data) and data[end] in _UTF8_CONTINUATION:
            return False
        return end == len(data) or not (_wordy(data[end - 1]) and _wordy(data[end]))


def _wordy(byte: int) -> bool:
    """Letters, digits and any non-ASCII byte (accented letters, CJK) join into words."""
    return byte >= 0x80 or chr(byte).isalnum()


def _starts_word(data: bytes, s: int) -> bool:
    byte = data[s]
    if byte in _SPACE or byte in _UTF8_CONTINUATION:
        return False
    return s == 0 or not (_wordy(data[s - 1]) and _wordy(byte))


def _char_offsets(text: str) -> list[int]:
    """For each byte offset of ``text`` in UTF-8 (and its end), the character offset."""
    out: list[int] = []
    for i, ch in enumerate(text):
        out.extend([i] * len(ch.encode("utf-8")))
    out.append(len(text))
    return out


# -- a tokenizer's vocabulary as bytes -----------------------------------------------


def vocabulary_of(tokenizer: Any) -> TokenVocabulary:
    """The :class:`TokenVocabulary` of a Hugging Face fast tokenizer (cached per tokenizer).

    Byte-level BPE (GPT-2, Llama 3, SmolLM2, BART) and SentencePiece-style
    vocabularies ("▁" for a space, ``<0x41>`` byte tokens: Llama 2, T5, Gemma)
    are read exactly; others (WordPiece lower-cases and splits text) cannot
    spell a passage verbatim and are refused.
    """
    return _cached_vocabulary(_TokenizerKey(tokenizer))


class _TokenizerKey:
    """Hashes a tokenizer by identity, so the cache never compares tokenizers."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def __hash__(self) -> int:
        return id(self.tokenizer)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _TokenizerKey) and other.tokenizer is self.tokenizer


@lru_cache(maxsize=8)
def _cached_vocabulary(key: _TokenizerKey) -> TokenVocabulary:
    tokenizer = key.tokenizer
    kind = _decoder_kind(tokenizer)
    size = len(tokenizer)
    names = tokenizer.convert_ids_to_tokens(list(range(size)))
    special = set(getattr(tokenizer, "all_special_ids", ()))
    for token_id, added in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(added, "special", False):
            special.add(int(token_id))
    table = _byte_level_table() if kind == "byte-level" else None
    pieces: list[bytes | None] = []
    for token_id, name in enumerate(names):
        if token_id in special or name is None:
            pieces.append(None)
        elif table is not None:
            pieces.append(_byte_level_piece(name, table))
        else:
            pieces.append(_sentencepiece_piece(name))
    return TokenVocabulary(pieces)


def _decoder_kind(tokenizer: Any) -> str:
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise BadInputError(
            f"grounded decoding needs a fast (Rust) tokenizer; {type(tokenizer).__name__} "
            "is not one: load the model with use_fast=True")
    decoder = json.loads(backend.to_str()).get("decoder") or {}
    kinds = _decoder_types(decoder)
    if "ByteLevel" in kinds:
        return "byte-level"
    if {"Metaspace", "ByteFallback"} & kinds or "▁" in json.dumps(decoder):
        return "sentencepiece"
    raise BadInputError(
        f"grounded decoding cannot spell passages verbatim with a {sorted(kinds) or 'plain'} "
        "tokenizer decoder (WordPiece lower-cases and splits text); use a model with a "
        "byte-level BPE or SentencePiece tokenizer, or another --decoding")


def _decoder_types(decoder: Mapping) -> set[str]:
    kinds = {decoder.get("type", "")}
    for inner in decoder.get("decoders") or ():
        kinds |= _decoder_types(inner)
    return kinds - {""}


@lru_cache(maxsize=1)
def _byte_level_table() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, reversed (character -> byte)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes)}


def _byte_level_piece(name: str, table: Mapping[str, int]) -> bytes | None:
    try:
        return bytes(table[ch] for ch in name)
    except KeyError:  # an added, non-special token written as plain text
        return name.encode("utf-8")


def _sentencepiece_piece(name: str) -> bytes:
    if len(name) == 6 and name.startswith("<0x") and name.endswith(">"):
        try:
            return bytes([int(name[3:5], 16)])
        except ValueError:
            pass
    return name.replace("▁", " ").encode("utf-8")
