"""Loaders for benchmark data: BEIR retrieval folders and open-domain QA JSONL.

BEIR layout (Thakur et al., 2021)::

    FOLDER/corpus.jsonl        {"_id", "title", "text"} per line (indexed by ragmix as is)
    FOLDER/queries.jsonl       {"_id", "text"} per line
    FOLDER/qrels/SPLIT.tsv     query-id <TAB> corpus-id <TAB> score, after a header line

QA JSONL: one ``{"question", "answers": [...]}`` per line (SQuAD-open), or
``"answer"`` (NQ-open; a list or a single string), with ``"id"`` if present.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ragmix.errors import BadInputError


class BeirSplit(NamedTuple):
    """One split of a BEIR dataset: the corpus file, its judged queries and qrels."""

    corpus: Path
    queries: dict[str, str]  # qid -> text, only the queries judged in this split
    qrels: dict[str, dict[str, int]]  # qid -> doc id -> relevance


@dataclass(frozen=True)
class QAExample:
    """A question with its gold answers (strings, or patterns for CuratedTREC)."""

    id: str  # the file's "id", else "line-N"
    question: str
    answers: tuple[str, ...]
    gold_doc_id: str | None = None  # SQuAD-open's "gold_paragraph", when given


def _existing(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInputError(f"{what} file not found: {str(path)!r}")
    return path


def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a bad line raises, naming it."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise BadInputError(f"{path}:{lineno}: expected a JSON object, got {row!r:.60}")
            yield lineno, row


def load_queries(path: str | Path) -> dict[str, str]:
    """``{qid: text}`` from a BEIR ``queries.jsonl``.

    >>> load_queries("scifact/queries.jsonl")["0"]  # doctest: +SKIP
    '0-dimensional biomaterials lack inductive properties.'
    """
    path = _existing(path, "queries")
    queries: dict[str, str] = {}
    for lineno, row in _json_lines(path):
        qid, text = row.get("_id"), row.get("text")
        if isinstance(qid, bool) or not isinstance(qid, (str, int)) or str(qid) == "":
            raise BadInputError(f"{path}:{lineno}: missing \"_id\" (a non-empty string)")
        if not isinstance(text, str):
            raise BadInputError(f"{path}:{lineno}: \"text\" must be a string, got {text!r:.60}")
        queries[str(qid)] = text
    return queries


def load_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """``{qid: {doc_id: relevance}}`` from BEIR TSV (3 columns) or TREC (4 columns) qrels.

    A first line whose relevance column is not an integer is a header and skipped.
    """
    path = _existing(path, "qrels")
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) not in (3, 4):
                raise BadInputError(
                    f"{path}:{lineno}: expected 'query-id corpus-id score' (BEIR) or "
                    f"'query-id 0 doc-id score' (TREC), got {line.strip()!r:.80}")
            qid, doc_id, score = fields[0], fields[-2], fields[-1]
            try:
                relevance = int(score)
            except ValueError:
                if lineno == 1:  # the BEIR header: query-id corpus-id score
                    continue
                raise BadInputError(
                    f"{path}:{lineno}: relevance must be an integer, got {score!r}") from None
            qrels.setdefault(qid, {})[doc_id] = relevance
    if not qrels:
        raise BadInputError(f"{path}: no judgements found")
    return qrels


def judged_queries(queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> dict[str, str]:
    """The queries that have judgements, in qrels order; every judged one must have text."""
    missing = [qid for qid in qrels if qid not in queries]
    if missing:
        raise BadInputError(
            f"{len(missing)} judged query id(s) have no text in the queries file, "
            f"e.g. {missing[:3]}; are the queries and qrels from the same dataset?")
    return {qid: queries[qid] for qid in qrels}


def load_beir(folder: str | Path, split: str = "test") -> BeirSplit:
    """The corpus path, judged queries and qrels of one split of a BEIR folder.

    >>> corpus, queries, qrels = load_beir("../shared/data/scifact")  # doctest: +SKIP
    >>> len(queries), corpus.name  # doctest: +SKIP
    (300, 'corpus.jsonl')
    """
    corpus, queries_path, qrels_path = beir_paths(folder, split)
    qrels = load_qrels(qrels_path)
    return BeirSplit(corpus, judged_queries(load_queries(queries_path), qrels), qrels)


def beir_paths(folder: str | Path, split: str = "test") -> tuple[Path, Path, Path]:
    """The corpus, queries and qrels files of one split of a BEIR folder, checked to exist."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise BadInputError(f"BEIR folder not found: {str(folder)!r}")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise BadInputError(f"no {split!r} split in {str(folder)!r}; it has {splits or 'none'}")
    return (_existing(folder / "corpus.jsonl", "corpus"),
            _existing(folder / "queries.jsonl", "queries"), qrels_path)


def _answers(value: object) -> tuple[str, ...] | None:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(a, str) for a in value):
        return tuple(value)
    return None


def load_qa(path: str | Path) -> list[QAExample]:
    """Questions and gold answers from QA JSONL (SQuAD-open, NQ-open, CuratedTREC).

    >>> load_qa("nq-open/NQ-open.dev.jsonl")[0]  # doctest: +SKIP
    QAExample(id='line-1', question='when was the last time anyone was on the moon',
              answers=('14 December 1972 UTC', 'December 1972'), gold_doc_id=None)
    """
    path = _existing(path, "questions")
    examples: list[QAExample] = []
    for lineno, row in _json_lines(path):
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise BadInputError(f"{path}:{lineno}: \"question\" must be a non-empty string")
        key = "answers" if "answers" in row else "answer"
        answers = _answers(row.get(key))
        if answers is None:
            raise BadInputError(
                f"{path}:{lineno}: \"answers\" (or \"answer\") must be a string or a non-empty "
                f"list of strings, got {row.get(key)!r:.60}")
        qid = row.get("id")
        gold = row.get("gold_paragraph")
        examples.append(QAExample(
            id=str(qid) if qid is not None else f"line-{lineno}",
            question=question.strip(), answers=answers,
            gold_doc_id=str(gold) if gold is not None else None))
    if not examples:
        raise BadInputError(f"{path}: no questions found")
    return examples


def qa_retrieval_split(
    examples: Sequence[QAExample],
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """(queries, qrels) that judge each question's gold paragraph relevant (SQuAD-open).

    Questions without a ``gold_doc_id`` are left out.
    """
    queries = {ex.id: ex.question for ex in examples if ex.gold_doc_id is not None}
    qrels = {ex.id: {ex.gold_doc_id: 1} for ex in examples if ex.gold_doc_id is not None}
    if not qrels:
        raise BadInputError("no question has a gold paragraph (\"gold_paragraph\") to judge")
    return queries, qrels
