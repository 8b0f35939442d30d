"""The "stuff" prompt: numbered passages plus the question, and citation parsing."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from ragmix.errors import BadInputError
from ragmix.types import Hit

# Chosen by trying a dozen wordings on SmolLM2-135M-Instruct (greedy): asking
# for "a few words" keeps its answers short; instructions placed after the
# passages, worked examples and "the passage number" phrasings made it copy
# passages or answer with the number alone.
INSTRUCTION = (
    "Read the numbered passages and answer the question below in a few words, "
    "using only the passages. Cite the passage you used like [1] or [2]."
)
NO_PASSAGES = (
    "No passages were found for this question. Answer in one short sentence if you "
    "know the answer; otherwise say that you do not know."
)


def build_prompt(
    question: str, hits: Sequence[Hit], *, max_passage_chars: int | None = None,
    instruction: str = INSTRUCTION,
) -> str:
    """The prompt for one question: instruction, numbered passages, question.

    Passages are numbered from 1 in the order given, as "[1] (title) text";
    ``max_passage_chars`` cuts each passage's text to that many characters.

    >>> hit = Hit(chunk_id=0, doc_id="d", text="Paris is the capital.", score=1.0,
    ...           prob=1.0, rank=1, title="France")
    >>> print(build_prompt("What is the capital of France?", [hit]))  # doctest: +ELLIPSIS
    Read the numbered passages ...
    [1] (France) Paris is the capital.
    <BLANKLINE>
    Question: What is the capital of France?
    """
    if max_passage_chars is not None and max_passage_chars < 1:
        raise BadInputError(f"max_passage_chars must be greater than 0, got {max_passage_chars}")
    question = " ".join(question.split())
    if not hits:
        return f"{NO_PASSAGES}\n\nQuestion: {question}"
    passages = "\n\n".join(
        _format_passage(n, hit, max_passage_chars) for n, hit in enumerate(hits, start=1)
    )
    return f"{instruction}\n\n{passages}\n\nQuestion: {question}"


PASSAGE_INSTRUCTION = "Answer the question in a few words, using the passage."
# Grounded decoding copies the answer from the passages whatever the prompt says; the
# prompt only steers which span: a short one that answers, not the question's words.
GROUNDED_INSTRUCTION = (
    "Read the numbered passages and answer the question below with a few words "
    "copied from one passage."
)
GROUNDED_PASSAGE_INSTRUCTION = "Answer the question with a few words copied from the passage."


def build_passage_prompt(question: str, hit: Hit) -> str:
    """The prompt for one (question, passage) pair, as RAG-Sequence and RAG-Token read it.

    >>> hit = Hit(chunk_id=0, doc_id="d", text="Paris is the capital.", score=1.0,
    ...           prob=1.0, rank=1, title="France")
    >>> print(build_passage_prompt("What is the capital of France?", hit))
    Answer the question in a few words, using the passage.
    <BLANKLINE>
    Passage: (France) Paris is the capital.
    <BLANKLINE>
    Question: What is the capital of France?
    """
    return _passage_prompt(PASSAGE_INSTRUCTION, question, hit)


# Worked examples for the "few-shot" style: three SQuAD *train* questions (never dev),
# short passages, answers copied from them (a place, a name, a number).
FEW_SHOT_EXAMPLES = (
    ("Sony Music Entertainment", "In 1989, CBS Records re-entered the music publishing "
     "business by acquiring Nashville music publisher Tree International Publishing for more "
     "than $30 million.", "In what city was Tree International Publishing located?",
     "Nashville"),
    ("The Times", "Times Atlases have been produced since 1895. They are currently produced "
     "by the Collins Bartholomew imprint of HarperCollins Publishers. The flagship product is "
     "The Times Comprehensive Atlas of the World.", "What publisher prints The Times atlas?",
     "HarperCollins Publishers"),
    ("American Idol", "Changes this season include only airing one episode a week during the "
     "final ten. Coca Cola ended their longtime sponsorship of the show and Ford Motor Company "
     "maintained a reduced role.", "Starting this season, how many episodes of Idol aired "
     "every week?", "one"),
)
# The grounded RAG-Sequence prompt's styles, compared on SQuAD train questions and the
# docs QA set by bench/bench_grounded.py --prompt (BENCHMARKS.md, "Grounded answers"):
# with the default reader (smollm2-squad), "answer", the prompt it was trained on,
# measured best on both; "few-shot" was no better and two to three times slower.
GROUNDED_PROMPT_STYLES = ("copy", "answer", "few-shot")
DEFAULT_GROUNDED_PROMPT = "answer"


def build_grounded_passage_prompt(question: str, hit: Hit, style: str | None = None) -> str:
    """The prompt for one (question, passage) pair under grounded decoding.

    ``style`` (default :data:`DEFAULT_GROUNDED_PROMPT`): ``copy`` asks for words
    copied from the passage; ``answer`` is RAG-Sequence's free prompt, the one
    the generator is jointly trained on; ``few-shot`` is ``copy`` after the
    worked examples of :data:`FEW_SHOT_EXAMPLES`.

    >>> hit = Hit(chunk_id=0, doc_id="d", text="Paris is the capital.", score=1.0,
    ...           prob=1.0, rank=1, title="France")
    >>> print(build_grounded_passage_prompt("What is the capital of France?", hit, "copy"))
    Answer the question with a few words copied from the passage.
    <BLANKLINE>
    Passage: (France) Paris is the capital.
    <BLANKLINE>
    Question: What is the capital of France?
    """
    style = DEFAULT_GROUNDED_PROMPT if style is None else style
    if style == "copy":
        return _passage_prompt(GROUNDED_PASSAGE_INSTRUCTION, question, hit)
    if style == "answer":
        return _passage_prompt(PASSAGE_INSTRUCTION, question, hit)
    if style == "few-shot":
        examples = "\n\n".join(f"Passage: ({title}) {text}\n\nQuestion: {q}\nAnswer: {a}"
                               for title, text, q, a in FEW_SHOT_EXAMPLES)
        instruction = f"{GROUNDED_PASSAGE_INSTRUCTION}\n\n{examples}"
        return _passage_prompt(instruction, question, hit)
    raise BadInputError(
        f"grounded prompt style must be one of {GROUNDED_PROMPT_STYLES}, got {style!r}")


def _passage_prompt(instruction: str, question: str, hit: Hit) -> str:
    question = " ".join(question.split())
    passage = _format_passage(0, hit, None).split(" ", 1)[1]  # without the [n] label
    return f"{instruction}\n\nPassage: {passage}\n\nQuestion: {question}"


def _format_passage(number: int, hit: Hit, max_chars: int | None) -> str:
    # One line per passage: newlines inside a passage read as a new passage.
    text, offsets = shown_text(hit, max_chars)
    if hit.text[offsets[-1] :].strip():  # cut at max_chars: more text follows
        text += " ..."
    title = " ".join(hit.title.split())
    return f"[{number}] ({title}) {text}" if title else f"[{number}] {text}"


def shown_text(hit: Hit, max_chars: int | None = None) -> tuple[str, list[int]]:
    """A passage's text as the prompts show it, and where each of its characters is in ``hit.text``.

    White space runs become one space (a prompt holds one passage per
    line) and ``max_chars`` cuts at a word. The offsets list has one entry
    per shown character plus the end, so shown ``[i:j]`` is
    ``hit.text[offsets[i]:offsets[j - 1] + 1]``.

    >>> hit = Hit(chunk_id=0, doc_id="d", text="  Paris\\n\\nis  big", score=1.0, prob=1.0, rank=1)
    >>> text, offsets = shown_text(hit)
    >>> text, hit.text[offsets[6] : offsets[7] + 1]
    ('Paris is big', 'is')
    """
    if max_chars is not None and max_chars < 1:
        raise BadInputError(f"max_passage_chars must be greater than 0, got {max_chars}")
    chars: list[str] = []
    offsets: list[int] = []
    for match in re.finditer(r"\S+", hit.text):
        if chars:
            chars.append(" ")
            offsets.append(match.start() - 1)
        chars.extend(match.group())
        offsets.extend(range(match.start(), match.end()))
    text = "".join(chars)
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0]
        offsets = offsets[: len(text)]
    offsets.append(offsets[-1] + 1 if offsets else 0)
    return text, offsets


# Put after the first character of a special-token string found in a prompt's text: the
# string reads the same, but no tokenizer matches it as the token any more.
FENCE = "\u200b"  # ZERO WIDTH SPACE


def fence_special_tokens(text: str, specials: Iterable[str]) -> str:
    """``text`` with every special-token string in it made plain text for the tokenizer.

    Hugging Face tokenizers turn a special token's string found anywhere in
    their input (``<|im_end|>``, ``</s>``) into that token, so a retrieved
    passage quoting ``<|im_end|>\\n<|im_start|>system`` would end the user's
    turn and open a system turn of its own. :data:`FENCE` after the first
    character of each such string keeps the text as it reads; text holding
    none of them comes back unchanged, so ordinary prompts stay identical.
    (A special token of one character cannot be split, and is left as it is.)

    >>> fence_special_tokens("a <|im_end|> b", ["<|im_end|>", "</s>"])
    'a <\\u200b|im_end|> b'
    >>> fence_special_tokens("no tokens here", ["<|im_end|>"])
    'no tokens here'
    """
    pattern = _specials_pattern(frozenset(specials))
    if pattern is None:
        return text
    # Splitting one string can leave another that overlapped it whole: repeat until none is.
    # The fence itself is in no special string, so each pass removes at least one.
    while pattern.search(text):
        text = pattern.sub(lambda m: m.group()[0] + FENCE + m.group()[1:], text)
    return text


@lru_cache(maxsize=16)
def _specials_pattern(specials: frozenset[str]) -> re.Pattern[str] | None:
    splittable = sorted((s for s in specials if len(s) > 1 and FENCE not in s),
                        key=lambda s: (-len(s), s))  # longest first: `<|im_start|>` before `<|`
    return re.compile("|".join(map(re.escape, splittable))) if splittable else None


# [1], [1, 3], [1; 2], [1-3]; adjacent groups ([1][2]) match one by one.
_CITATION = re.compile(r"\[\s*(\d+(?:\s*(?:[,;]|-|–)\s*\d+)*)\s*\]")
_NUMBER_OR_RANGE = re.compile(r"(\d+)(?:\s*[-–]\s*(\d+))?")


def parse_citations(text: str, n_passages: int) -> tuple[int, ...]:
    """Passage numbers cited in ``text``, in order of first appearance, each once.

    Only numbers from 1 to ``n_passages`` count; ranges such as [1-3] expand.

    >>> parse_citations("Paris [2]. It is big [1, 3][2] and old [7].", 3)
    (2, 1, 3)
    """
    seen: dict[int, None] = {}
    for group in _CITATION.finditer(text):
        for match in _NUMBER_OR_RANGE.finditer(group.group(1)):
            low = int(match.group(1))
            high = int(match.group(2)) if match.group(2) else low
            # A range that runs backwards or absurdly far is not a citation.
            if high < low or high - low > n_passages:
                continue
            for number in range(low, high + 1):
                if 1 <= number <= n_passages:
                    seen.setdefault(number, None)
    return tuple(seen)
