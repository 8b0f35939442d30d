"""Answer metrics: SQuAD exact match and token F1, contains, regex answers, answer recall.

Exact match and F1 follow the official SQuAD v1.1 evaluation script
(Rajpurkar et al., 2016), which open-domain QA papers (DrQA, DPR, RAG) reuse:
answers are normalised (lower case, punctuation removed, the articles a/an/the
dropped, white space collapsed) and a prediction scores the maximum over its
gold answers. CuratedTREC's gold answers are regular expressions; they are
matched as DrQA does (case-insensitive, anchored at the start of the
prediction). Contains is the lenient reading of exact match: a gold answer
occurs somewhere in the prediction, which forgives a generator that answers
in a sentence ("It is Paris, France") rather than with the span alone.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

from ragmix.errors import BadInputError

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_REGEX_FLAGS = re.IGNORECASE | re.UNICODE | re.MULTILINE


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower, strip punctuation, drop a/an/the, collapse spaces.

    >>> normalize_answer("The  Eiffel-Tower, in PARIS!")
    'eiffeltower in paris'
    >>> normalize_answer("an apple a day")
    'apple day'
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _golds(answers: str | Sequence[str]) -> list[str]:
    golds = [answers] if isinstance(answers, str) else list(answers)
    if not golds:
        raise BadInputError("answers must hold at least one gold answer, got none")
    bad = [a for a in golds if not isinstance(a, str)]
    if bad:
        raise BadInputError(f"gold answers must be strings, got {bad[0]!r}")
    return golds


def _token_f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:  # also when either side is empty, as in the v1.1 script
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, answers: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0.

    >>> exact_match("the Beatles.", ["Beatles", "The Fab Four"])
    1.0
    >>> exact_match("Beatles band", ["Beatles"])
    0.0
    """
    norm = normalize_answer(prediction)
    return float(any(norm == normalize_answer(g) for g in _golds(answers)))


def f1(prediction: str, answers: str | Sequence[str]) -> float:
    """Token-overlap F1 with the best-matching gold answer.

    >>> f1("Beatles band", ["The Beatles"])  # P = 1/2, R = 1/1 -> 2 * .5 * 1 / 1.5
    0.6666666666666666
    >>> f1("in October 1973", ["October 1973", "1973"])  # P = 2/3, R = 1 -> 0.8
    0.8
    """
    return max(_token_f1(prediction, g) for g in _golds(answers))


def contains(prediction: str, answers: str | Sequence[str], *, regex: bool = False) -> float:
    """1.0 if any gold answer occurs in the prediction, else 0.0: exact match made lenient.

    Both sides are normalised as for exact match and compared as whole-token
    sequences, so "8" is not found inside "1987". A gold answer that normalises
    to nothing (say "The") is found only in a prediction that normalises to
    nothing too, where exact match also scores 1, so contains is never below
    exact match. With ``regex=True`` the answers are CuratedTREC patterns,
    searched anywhere in the prediction, where :func:`regex_match` (their exact
    match) anchors them at its start; a pattern sets its own word boundaries.

    >>> contains("It is Paris, France.", ["Paris"])  # "it is paris france" holds "paris"
    1.0
    >>> contains("Founded in 1987", ["8"])  # whole tokens only
    0.0
    >>> contains("It was Gagarin", [r"(Yuri\\s+)?Gagarin"], regex=True)
    1.0
    """
    golds = _golds(answers)
    if regex:
        return float(any(_compile(p).search(prediction.strip()) for p in golds))
    # padded with spaces, a substring of the single-spaced normalised text starts
    # and ends at token boundaries; an empty gold ("  ") is only in an empty prediction
    haystack = f" {normalize_answer(prediction)} "
    return float(any(f" {normalize_answer(g)} " in haystack for g in golds))


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, _REGEX_FLAGS)
    except re.error as exc:
        raise BadInputError(f"gold answer {pattern!r} is not a valid regular expression: {exc}")


def regex_match(prediction: str, patterns: str | Sequence[str]) -> float:
    """1.0 if any pattern matches at the start of the prediction (CuratedTREC, DrQA).

    >>> regex_match("Yuri Gagarin, in 1961", [r"(Yuri\\s+)?Gagarin"])
    1.0
    >>> regex_match("It was Gagarin", [r"Gagarin"])  # anchored at the start
    0.0
    """
    return float(any(_compile(p).match(prediction.strip()) for p in _golds(patterns)))


def answer_in_passages(
    answers: str | Sequence[str], passages: Sequence[str], *, regex: bool = False
) -> bool:
    """Whether any gold answer occurs in any passage: answer recall, as DPR counts it.

    Both sides are normalised as for exact match and compared as whole-token
    sequences, so "1" is not found inside "1990". With ``regex=True`` the
    answers are patterns searched anywhere in the (Unicode NFD) passage text.

    >>> answer_in_passages(["Fab Four"], ["They were called the fab four."])
    True
    >>> answer_in_passages(["1"], ["Founded in 1990."])
    False
    >>> answer_in_passages([r"19[0-9]{2}"], ["Founded in 1990."], regex=True)
    True
    """
    golds = _golds(answers)
    if regex:
        compiled = [_compile(p) for p in golds]
        texts = [unicodedata.normalize("NFD", p) for p in passages]
        return any(c.search(t) for c in compiled for t in texts)
    needles = [f" {n} " for n in map(normalize_answer, golds) if n]
    haystacks = [f" {normalize_answer(p)} " for p in passages]
    return any(n in h for n in needles for h in haystacks)
