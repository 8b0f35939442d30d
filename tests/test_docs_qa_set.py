"""The docs QA evaluation set (bench/data/docs_qa.jsonl) stays answerable from docs/.

Every question's gold answer must still occur in its source docs file after SQuAD
normalisation, so that a change to docs/ that moves or rewords an answer is caught
here and the set is updated with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragmix.evaluation.qa_metrics import normalize_answer

ROOT = Path(__file__).resolve().parents[1]
QA_FILE = ROOT / "bench" / "data" / "docs_qa.jsonl"


def _load() -> list[dict]:
    lines = QA_FILE.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


RECORDS = _load()


def _contains_tokens(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return n > 0 and any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def test_size_and_unique_ids() -> None:
    assert len(RECORDS) >= 40
    ids = [r["id"] for r in RECORDS]
    assert len(ids) == len(set(ids)), "duplicate ids"


@pytest.mark.parametrize("record", RECORDS, ids=[r["id"] for r in RECORDS])
def test_record_shape(record: dict) -> None:
    assert isinstance(record["question"], str) and record["question"].strip()
    answers = record["answers"]
    assert isinstance(answers, list) and 1 <= len(answers) <= 3
    assert all(isinstance(a, str) and normalize_answer(a) for a in answers)
    assert record["source"].startswith("docs/") and (ROOT / record["source"]).is_file()


@pytest.mark.parametrize("record", RECORDS, ids=[r["id"] for r in RECORDS])
def test_gold_answer_occurs_in_source(record: dict) -> None:
    text = normalize_answer((ROOT / record["source"]).read_text(encoding="utf-8")).split()
    found = [a for a in record["answers"] if _contains_tokens(text, normalize_answer(a).split())]
    assert found, f"{record['id']}: no gold answer of {record['answers']} occurs in {record['source']}"
