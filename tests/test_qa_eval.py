"""run_qa_eval, the library under `ragmix eval qa`: runs, journals, resume and report files,
with the scripted generator of test_eval_qa over a tiny hashing-encoder collection."""

from __future__ import annotations

import doctest
import hashlib
import json
from pathlib import Path

import pytest

import ragmix.evaluation.qa_eval
from ragmix.errors import BadInputError
from ragmix.evaluation.qa_eval import QASample, journal_path, run_qa_eval
from ragmix.evaluation.run_retrieval import index_corpus

from test_eval_cli import write_beir
from test_eval_qa import _Crashing, _Generator

QUESTIONS = [{"question": "what flows from a volcano crater?", "answer": ["lava"]},
             {"question": "what pulls the ocean tides?", "answers": ["the moon"]},
             {"question": "what do canopy trees hold?", "answer": "rain"}]
SCRIPT = {"what flows from a volcano crater?": "It is lava [1].",
          "what pulls the ocean tides?": "The sun", "what do canopy trees hold?": "Rain."}


class _Stages:
    def __init__(self) -> None:
        self.started: list[tuple[str, int | None]] = []

    def start(self, stage: str, total: int | None) -> None:
        self.started.append((stage, total))

    def advance(self, stage: str, n: int = 1) -> None:
        pass


@pytest.fixture
def setup(tmp_path: Path):
    beir = write_beir(tmp_path / "tiny")
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    col, _ = index_corpus(tmp_path / "col", beir / "corpus.jsonl", encoder="hashing-1024")
    with col:
        yield col, QASample.load(questions), tmp_path / "out"


def test_run_qa_eval_reports_every_run_and_removes_its_journals(setup, capsys) -> None:
    col, sample, out = setup
    stages = _Stages()
    result = run_qa_eval(col, _Generator(SCRIPT), sample, out, runs=["stuff", "stuff"],
                         retrieval="bm25", k=2, generator_name="scripted-spec",
                         dtype="float32", progress=stages)
    assert list(result.reports) == ["stuff"] and result.n_questions == 3
    assert result.reports["stuff"].metrics["em"] == pytest.approx(1 / 3)
    assert stages.started == [("answering (stuff, bm25)", 3)]
    data = json.loads(result.results_path.read_text())
    assert result.results_path == out / "results.json" and result.report_path == out / "report.md"
    assert data["modes"]["stuff"]["metrics"]["contains"] == pytest.approx(2 / 3)
    assert data["settings"]["generator"] == "scripted-spec" and data["settings"]["k"] == 2
    assert data["data"] == {"questions": sample.path, "n_questions": 3, "limit": None,
                            "seed": 0, "regex": False}
    assert data["collection"]["path"] == col.location and data["collection"]["documents"] == 5
    assert (out / "recall_at_k.png").exists() and result.plots_skipped is None
    assert list((out / ".journal").iterdir()) == []
    assert capsys.readouterr() == ("", "")  # the library never prints


def test_run_qa_eval_resumes_a_crashed_call(setup) -> None:
    col, sample, out = setup
    whole = run_qa_eval(col, _Generator(SCRIPT), sample, out / "whole", retrieval="bm25", k=2)
    with pytest.raises(KeyboardInterrupt):
        run_qa_eval(col, _Crashing(SCRIPT, crash_on="what do canopy trees hold?"), sample, out,
                    runs=["stuff"], retrieval="bm25", k=2)
    # the journal's name is the one earlier ragmix versions gave it: old journals resume
    key = {"collection": str(col.directory.resolve()),
           "questions": str(Path(sample.path).resolve()), "limit": None, "seed": 0,
           "fusion": "weighted", "query_encoder": None, "dtype": "float32", "rerank": None,
           "rerank_model": None, "rerank_depth": 50}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    journal = out / ".journal" / f"qa-stuff-{digest}.jsonl"
    assert journal_path(out, "stuff", key) == journal
    assert len(journal.read_text().splitlines()) == 3  # header + 2 answers
    resumed, again = [], _Crashing(SCRIPT)
    result = run_qa_eval(col, again, sample, out, runs=["stuff"], retrieval="bm25", k=2,
                         on_resume=lambda name, path: resumed.append((name, path)))
    assert resumed == [("stuff", journal)] and again.asked == ["what do canopy trees hold?"]
    same = [name for name in whole.reports["stuff"].metrics
            if not name.endswith(("ms", "question"))]  # not the timings
    assert {n: result.reports["stuff"].metrics[n] for n in same} == {
        n: whole.reports["stuff"].metrics[n] for n in same}
    assert [r.prediction for r in result.reports["stuff"].results] == [
        r.prediction for r in whole.reports["stuff"].results]
    assert not journal.exists()


def test_run_qa_eval_without_a_generator_measures_retrieval(setup) -> None:
    col, sample, out = setup
    result = run_qa_eval(col, None, sample, out, runs=["ignored"], retrieval="bm25")
    assert list(result.reports) == ["bm25"]
    assert set(result.reports["bm25"].metrics) >= {"answer_recall@5", "retrieval_ms"}
    assert "em" not in result.reports["bm25"].metrics
    assert json.loads(result.results_path.read_text())["settings"]["generator"] is None


def test_run_qa_eval_refuses_an_unknown_run_before_answering(setup) -> None:
    col, sample, out = setup
    gen = _Crashing(SCRIPT)
    with pytest.raises(BadInputError, match="unknown QA run 'rag-token-grounded'"):
        run_qa_eval(col, gen, sample, out, runs=["stuff", "rag-token-grounded"])
    assert gen.asked == [] and not out.exists()
    with pytest.raises(BadInputError, match="no runs"):
        run_qa_eval(col, gen, sample, out, runs=[])


def test_docstring_examples() -> None:
    failures, _ = doctest.testmod(ragmix.evaluation.qa_eval, optionflags=doctest.ELLIPSIS)
    assert failures == 0
