"""Training data for the retriever: queries with their positive passages, and the corpus.

Two sources: a BEIR folder (``queries.jsonl`` + ``qrels/SPLIT.tsv`` +
``corpus.jsonl``) and a SQuAD v1.1 file (``train-v1.1.json[.gz]``), where
each question's positive is the paragraph it was asked about. Passage texts
are built exactly as ``ragmix index`` builds them (BEIR: title, blank line,
text), so the model is trained on what it will embed.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from ragmix.errors import BadInputError


@dataclass(frozen=True)
class TrainPair:
    """A query and the ids of its relevant passages (and, for QA data, its answers)."""

    query_id: str
    query: str
    positives: tuple[str, ...]
    answers: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainingSet:
    """Pairs plus the corpus they point into: ``{passage id: text}``."""

    pairs: tuple[TrainPair, ...]
    corpus: dict[str, str]

    def __post_init__(self) -> None:
        if not self.pairs:
            raise BadInputError("no training pairs: every query lacked a positive in the corpus")


def load_beir_pairs(folder: str | Path, split: str = "train") -> TrainingSet:
    """The judged queries of one BEIR split (relevance > 0 is a positive), with the corpus.

    >>> data = load_beir_pairs("../shared/data/scifact")  # doctest: +SKIP
    >>> len(data.pairs), len(data.corpus)  # doctest: +SKIP
    (809, 5183)
    """
    from ragmix.documents.loaders import load_file
    from ragmix.evaluation.datasets import load_beir
    from ragmix.types import Document

    split_data = load_beir(folder, split)
    corpus = {d.doc_id: d.text for d in load_file(split_data.corpus) if isinstance(d, Document)}
    pairs = []
    for qid, query in split_data.queries.items():
        positives = tuple(d for d, rel in split_data.qrels[qid].items() if rel > 0 and d in corpus)
        if positives:
            pairs.append(TrainPair(qid, query, positives))
    return TrainingSet(tuple(pairs), corpus)


def load_squad_pairs(path: str | Path, *, id_prefix: str = "train") -> TrainingSet:
    """Questions of a SQuAD v1.1 file, each with its paragraph (id ``PREFIX/TITLE/N``).

    The ids match ``squad-open/paragraphs.jsonl``, so mined negatives and
    evaluation use the same corpus.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInputError(f"SQuAD file not found: {str(path)!r}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            articles = json.load(fh)["data"]
    except (json.JSONDecodeError, KeyError, TypeError, OSError) as exc:
        raise BadInputError(
            f"{str(path)!r} is not a SQuAD v1.1 file ({{'data': [articles]}}): {exc}") from None
    pairs, corpus = [], {}
    for article in articles:
        title = article["title"]
        for n, paragraph in enumerate(article["paragraphs"]):
            pid = f"{id_prefix}/{title}/{n}"
            # as ragmix indexes squad-open/paragraphs.jsonl: title, blank line, text
            corpus[pid] = f"{title.replace('_', ' ')}\n\n{paragraph['context']}"
            for j, qa in enumerate(paragraph["qas"]):
                answers = tuple(dict.fromkeys(a["text"] for a in qa["answers"]))
                qid = str(qa["id"]) if qa.get("id") is not None else f"{pid}/q{j}"
                pairs.append(TrainPair(qid, qa["question"].strip(), (pid,), answers))
    return TrainingSet(tuple(pairs), corpus)


def load_qa_pairs(path: str | Path) -> list:
    """(question, answers) examples from QA JSONL (SQuAD-open, NQ-open) or a SQuAD v1.1 file."""
    from ragmix.evaluation.datasets import QAExample, load_qa

    name = Path(path).name
    if name.endswith((".json", ".json.gz")):
        data = load_squad_pairs(path)
        return [QAExample(p.query_id, p.query, p.answers, p.positives[0]) for p in data.pairs
                if p.answers]
    return load_qa(path)
