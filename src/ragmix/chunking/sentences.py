"""Sentence spans with character offsets: the units the semantic chunker groups."""

from __future__ import annotations

import re

from ragmix.chunking._spans import trim

# A sentence ends after terminal punctuation (and any closing quotes or brackets)
# that whitespace follows, or at a blank line. Every break falls on whitespace,
# so no token of a whitespace or WordPiece tokenizer straddles two sentences.
_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*(?=\s)|\n[^\S\n]*\n")
# Full stops that rarely end a sentence in English prose and scientific abstracts
# (not "etc.", which often does, nor single capitals: "vitamin D." ends many).
_ABBREVIATIONS = frozenset(
    "e.g i.e cf vs al fig figs eq eqs ref refs approx dr mr mrs ms prof st".split()
)
_LAST_WORD = re.compile(r"(\w+(?:\.\w+)*)\.$")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Trimmed, non-empty ``(start, end)`` spans of the sentences of ``text``, in order.

    A regex splitter, as Kamradt's semantic chunking notebook uses, that also
    breaks at blank lines and keeps common abbreviations ("e.g.", "et al.",
    "Fig.") inside their sentence. The spans
    cover every non-whitespace character, and what lies between two of them
    is whitespace.

    >>> text = "Cells divide. See e.g. Fig. 2 for details!\\n\\nA new paragraph"
    >>> [text[s:e] for s, e in sentence_spans(text)]
    ['Cells divide.', 'See e.g. Fig. 2 for details!', 'A new paragraph']
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _END.finditer(text):
        if match.group().startswith(".") and _is_abbreviation(text, match.start() + 1):
            continue
        spans.append(trim(text, start, match.end()))
        start = match.end()
    spans.append(trim(text, start, len(text)))
    return [(s, e) for s, e in spans if s < e]


def _is_abbreviation(text: str, dot_end: int) -> bool:
    """Whether the full stop ending at ``dot_end`` closes a known abbreviation.

    >>> _is_abbreviation("as in e.g. this", 10), _is_abbreviation("it ends. Then", 8)
    (True, False)
    """
    word = _LAST_WORD.search(text, max(0, dot_end - 12), dot_end)
    if word is None:
        return False
    return word.group(1).lower() in _ABBREVIATIONS
