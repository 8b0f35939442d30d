"""QA evaluation: evaluate_qa with a scripted generator, and `ragmix eval qa` end to end."""

from __future__ import annotations

import doctest
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import ragmix.evaluation.datasets
import ragmix.generation
import ragmix.evaluation.qa_journal
import ragmix.evaluation.qa_metrics
import ragmix.evaluation.retrieval_metrics
import ragmix.evaluation.run_qa
import ragmix.evaluation.run_retrieval
from ragmix.cli.eval_cmd import eval_group
from ragmix.cli.main import cli
from ragmix.errors import BadInputError
from ragmix.evaluation.datasets import QAExample
from ragmix.evaluation.run_qa import evaluate_qa, sample_questions, strip_citations
from ragmix.types import Hit

from test_eval_cli import write_beir

if "eval" not in cli.commands:  # until cli/main.py registers it
    cli.add_command(eval_group)

PASSAGES = ["The capital of France is Paris.", "Berlin is in Germany.", "Rome is old.",
            "Madrid hosts the Prado."]


class _Searcher:
    def __init__(self) -> None:
        self.depths = []

    def search(self, query: str, k: int, *, mode: str) -> list[Hit]:
        self.depths.append(k)
        return [Hit(i, f"d{i}", text, 1.0 / (i + 1), 0.0, i + 1)
                for i, text in enumerate(PASSAGES[:k])]


class _Generator:
    """Answers with a scripted text per question, citing passage 1."""

    name = "scripted"

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def generate(self, prompt: str, *, max_new_tokens: int = 256, on_token=None) -> str:
        question = prompt.rsplit("Question: ", 1)[1]
        return self.answers[question]

    def token_logprobs(self, prompts, continuations):
        raise NotImplementedError


EXAMPLES = [QAExample("1", "capital of France?", ("Paris",)),
            QAExample("2", "where is Berlin?", ("Germany",)),
            QAExample("3", "what is in Madrid?", ("the Prado museum",))]


def test_evaluate_qa_scores_answers_and_recall() -> None:
    gen = _Generator({"capital of France?": "Paris [1].", "where is Berlin?": "In Europe [2]",
                      "what is in Madrid?": "the Prado [4]"})
    searcher = _Searcher()
    report = evaluate_qa(searcher, gen, EXAMPLES, mode="bm25", k=2, recall_ks=(1, 4))
    assert searcher.depths == [4, 4, 4]  # one search per question, as deep as the largest k
    by_id = {r.id: r for r in report.results}
    assert by_id["1"].prediction == "Paris ." and by_id["1"].em == 1.0  # citation stripped
    assert by_id["2"].em == 0.0 and by_id["2"].f1 == 0.0
    # "prado" vs "prado museum": P = 1, R = 1/2 -> F1 = 2/3
    assert by_id["3"].f1 == pytest.approx(2 / 3)
    # contains: "paris" in "paris"; "germany" not in "in europe"; "prado museum" not in "prado"
    assert [by_id[i].contains for i in "123"] == [1.0, 0.0, 0.0]
    # answers found: Paris in passage 1; Germany in passage 2; "prado museum" in none
    assert by_id["1"].answer_recall == {"answer_recall@1": 1.0, "answer_recall@2": 1.0,
                                        "answer_recall@4": 1.0}
    assert by_id["2"].answer_recall["answer_recall@1"] == 0.0
    assert by_id["2"].answer_recall["answer_recall@2"] == 1.0
    assert report.metrics["em"] == pytest.approx(1 / 3)
    assert report.metrics["f1"] == pytest.approx((1 + 0 + 2 / 3) / 3)
    assert report.metrics["contains"] == pytest.approx(1 / 3)
    assert report.metrics["answer_recall@2"] == pytest.approx(2 / 3)
    assert report.metrics["s_per_question"] >= 0 and "retrieval_ms" in report.metrics
    assert json.dumps(report.to_dict())  # JSON-ready


def test_evaluate_qa_without_generator_and_with_regex() -> None:
    report = evaluate_qa(_Searcher(), None, [QAExample("1", "q?", (r"Pa(ris)?",))], mode="dense",
                         k=1, recall_ks=(1,), regex=True)
    assert report.metrics == {"answer_recall@1": 1.0, "retrieval_ms": pytest.approx(
        report.metrics["retrieval_ms"])}
    assert report.results[0].prediction is None and report.results[0].em is None
    assert report.results[0].contains is None
    regex = evaluate_qa(_Searcher(), _Generator({"q?": "Paris, France"}),
                        [QAExample("1", "q?", (r"paris",))], mode="bm25", k=1, regex=True)
    assert regex.metrics["em"] == 1.0 and "f1" not in regex.metrics
    later = evaluate_qa(_Searcher(), _Generator({"q?": "It is Paris"}),
                        [QAExample("1", "q?", (r"paris",))], mode="bm25", k=1, regex=True)
    assert later.metrics["em"] == 0.0 and later.metrics["contains"] == 1.0  # search, not match
    with pytest.raises(BadInputError, match="no questions"):
        evaluate_qa(_Searcher(), None, [], mode="bm25")


class _Crashing(_Generator):
    """Scripted answers that raise on one question, and a log of what was asked."""

    def __init__(self, answers: dict[str, str], crash_on: str | None = None) -> None:
        super().__init__(answers)
        self.crash_on, self.asked = crash_on, []

    def generate(self, prompt: str, *, max_new_tokens: int = 256, on_token=None) -> str:
        question = prompt.rsplit("Question: ", 1)[1]
        if question == self.crash_on:
            raise KeyboardInterrupt  # the run dies here, as on Ctrl-C or a kill
        self.asked.append(question)
        return super().generate(prompt, max_new_tokens=max_new_tokens)


SCRIPT = {"capital of France?": "Paris [1].", "where is Berlin?": "Germany",
          "what is in Madrid?": "the Prado [4]"}


def _answers(report):
    return [(r.id, r.prediction, r.em, r.f1, r.contains, r.answer_recall) for r in report.results]


def test_a_journal_resumes_a_crashed_evaluation(tmp_path: Path) -> None:
    journal = tmp_path / "run.jsonl"
    whole = evaluate_qa(_Searcher(), _Generator(SCRIPT), EXAMPLES, mode="bm25", k=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate_qa(_Searcher(), _Crashing(SCRIPT, crash_on="what is in Madrid?"), EXAMPLES,
                    mode="bm25", k=2, journal=journal)
    assert len(journal.read_text().splitlines()) == 3  # header + the 2 finished answers
    with journal.open("a") as f:
        f.write('{"id": "3", "quest')  # a write torn by the crash
    again = _Crashing(SCRIPT)
    resumed = evaluate_qa(_Searcher(), again, EXAMPLES, mode="bm25", k=2, journal=journal)
    assert again.asked == ["what is in Madrid?"]  # only the unfinished question is redone
    assert _answers(resumed) == _answers(whole)
    assert resumed.metrics["em"] == whole.metrics["em"]
    assert len(journal.read_text().splitlines()) == 4  # the torn tail was replaced
    third = _Crashing(SCRIPT)
    evaluate_qa(_Searcher(), third, EXAMPLES, mode="bm25", k=2, journal=journal)
    assert third.asked == []


def test_a_journal_from_before_contains_resumes_scored(tmp_path: Path) -> None:
    journal = tmp_path / "run.jsonl"
    whole = evaluate_qa(_Searcher(), _Generator(SCRIPT), EXAMPLES, mode="bm25", k=2,
                        journal=journal)
    header, *rows = journal.read_text().splitlines()
    old = [json.loads(row) for row in rows]
    for row in old:
        del row["contains"]  # as a journal written before the metric existed
    journal.write_text("\n".join([header, *map(json.dumps, old)]) + "\n")
    again = _Crashing(SCRIPT)
    resumed = evaluate_qa(_Searcher(), again, EXAMPLES, mode="bm25", k=2, journal=journal)
    assert again.asked == []  # nothing regenerated: contains is scored from the prediction
    assert _answers(resumed) == _answers(whole)
    assert resumed.metrics["contains"] == whole.metrics["contains"] == pytest.approx(2 / 3)


def test_a_journal_of_other_settings_is_refused(tmp_path: Path) -> None:
    journal = tmp_path / "run.jsonl"
    evaluate_qa(_Searcher(), _Generator(SCRIPT), EXAMPLES[:1], mode="bm25", k=2, journal=journal)
    with pytest.raises(BadInputError, match=r"other settings \(max_new_tokens\); delete it"):
        evaluate_qa(_Searcher(), _Generator(SCRIPT), EXAMPLES, mode="bm25", k=2,
                    max_new_tokens=8, journal=journal)
    (tmp_path / "junk.jsonl").write_text("not json\n")
    with pytest.raises(BadInputError, match="not a QA journal"):
        evaluate_qa(_Searcher(), None, EXAMPLES, mode="bm25", journal=tmp_path / "junk.jsonl")


def test_sampling_is_seeded_and_keeps_file_order() -> None:
    examples = [QAExample(str(i), f"q{i}?", ("a",)) for i in range(50)]
    first = sample_questions(examples, 10, seed=1)
    assert first == sample_questions(examples, 10, seed=1) != sample_questions(examples, 10, seed=2)
    assert [int(e.id) for e in first] == sorted(int(e.id) for e in first)
    assert sample_questions(examples, None, seed=0) == examples


def test_strip_citations() -> None:
    assert strip_citations("Paris [1][2] and [1, 3].") == "Paris and ."
    assert strip_citations("no citation") == "no citation"


def test_eval_qa_cli_answer_recall(tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "tiny")
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in [
        {"question": "what flows from a volcano crater?", "answer": ["lava"]},
        {"question": "what pulls the ocean tides?", "answers": ["the moon"]},
        {"question": "what do canopy trees hold?", "answer": "rain"},
    ]) + "\n")
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(cli, ["eval", "qa", "--questions", str(questions), "--corpus",
                                 str(beir / "corpus.jsonl"), "--encoder", "hashing-1024",
                                 "--no-generate", "-r", "bm25", "--limit", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert data["task"] == "qa" and data["data"]["n_questions"] == 2
    assert data["modes"]["bm25"]["metrics"]["answer_recall@5"] == 1.0
    assert (out / "report.md").read_text().startswith("# ragmix QA evaluation")
    assert (out / "recall_at_k.png").stat().st_size > 0 and (out / "latency.png").exists()
    assert list((out / ".journal").iterdir()) == []  # the crash journal goes once reported
    nothing = runner.invoke(cli, ["eval", "qa", "--questions", str(questions), "--no-generate"])
    assert nothing.exit_code == 2 and "--collection DIR, --corpus FILE" in nothing.output


def test_eval_qa_cli_reports_contains(tmp_path: Path, monkeypatch) -> None:
    beir = write_beir(tmp_path / "tiny")
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in [
        {"question": "what flows from a volcano crater?", "answer": ["lava"]},
        {"question": "what pulls the ocean tides?", "answers": ["the moon"]},
        {"question": "what do canopy trees hold?", "answer": "rain"},
    ]) + "\n")
    scripted = _Generator({"what flows from a volcano crater?": "It is lava [1].",
                           "what pulls the ocean tides?": "The sun",
                           "what do canopy trees hold?": "Rain."})
    monkeypatch.setattr(ragmix.generation, "load_generator", lambda spec, **options: scripted)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "eval", "qa", "--questions", str(questions), "--corpus", str(beir / "corpus.jsonl"),
        "--encoder", "hashing-1024", "-r", "bm25", "--decoding", "free", "--out", str(out)])
    assert result.exit_code == 0, result.output
    stuff = json.loads((out / "results.json").read_text())["modes"]["stuff"]
    # EM: only "rain"; contains: "lava" is in "it is lava" too; "moon" is in neither
    assert stuff["metrics"]["em"] == pytest.approx(1 / 3)
    assert stuff["metrics"]["contains"] == pytest.approx(2 / 3)
    assert [q["contains"] for q in stuff["per_question"]] == [1.0, 0.0, 1.0]
    markdown = _cells((out / "report.md").read_text(), r"\s*\|\s*")
    assert (markdown["em"], markdown["contains"]) == ("0.3333", "0.6667")
    printed = _cells(result.output, r"\s{2,}")  # the table on the terminal
    assert (printed["EM"], printed["F1"], printed["contains"]) == ("0.333", "0.500", "0.667")


def _cells(text: str, separator: str) -> dict[str, str]:
    """The stuff row of a table, by column name (the header is the line that begins "mode")."""
    rows = {cells[0]: cells for cells in
            (re.split(separator, line.strip(" |")) for line in text.splitlines())}
    return dict(zip(rows["mode"], rows["stuff"]))


@pytest.mark.parametrize("module", [
    ragmix.evaluation, ragmix.evaluation.datasets, ragmix.evaluation.qa_metrics, ragmix.evaluation.retrieval_metrics,
    ragmix.evaluation.run_qa, ragmix.evaluation.run_retrieval,
])
def test_docstring_examples(module) -> None:
    """The worked examples in the docstrings are true."""
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0


@pytest.mark.parametrize("generation", ["rag-sequence", "rag-token"])
def test_evaluate_qa_with_the_papers_marginals(generation) -> None:
    torch = pytest.importorskip("torch")
    from tiny_models import minilm_tokenizer, tiny_llama

    from ragmix.generation import HFGenerator

    tok = minilm_tokenizer()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = HFGenerator(tiny_llama(torch, tok), tok, name="tiny")
        examples = [QAExample("1", "capital of france?", ("paris",)),
                    QAExample("2", "where is berlin?", ("germany",))]
        report = evaluate_qa(_Searcher(), gen, examples, mode="bm25", k=3, max_new_tokens=4,
                             generation=generation, beams=2)
    finally:
        torch.set_num_threads(threads)
    assert {"em", "f1", "s_per_question", "answer_recall@1"} <= set(report.metrics)
    assert all(r.prediction is not None and r.generation_s > 0 for r in report.results)
    assert report.metrics["answer_recall@1"] == 0.5  # "paris" is in passage 1, "germany" in 2
