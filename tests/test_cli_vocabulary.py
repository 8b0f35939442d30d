"""One vocabulary across the commands: -r/--retrieval is the retrieval mode everywhere,
-m/--mode the generation mode, --decoding its decoding; the old spellings still work, warned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import ragmix.evaluation.qa_eval
import ragmix.generation
from ragmix.cli.main import cli
from ragmix.cli.options import MODE_IS_RETRIEVAL
from ragmix.cli.qa_options import qa_runs
from ragmix.modes import QA_MODES, qa_mode_name, split_qa_mode

from test_eval_cli import write_beir
from test_eval_qa import _Generator


@pytest.fixture
def col(tmp_path: Path, corpus: Path) -> Path:
    col = tmp_path / "col"
    result = CliRunner().invoke(cli, ["index", str(corpus), "-c", str(col),
                                      "--encoder", "hashing-1024"])
    assert result.exit_code == 0, result.output
    return col


def _sources(result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [hit["source"] for hit in json.loads(result.stdout)]


def test_search_takes_the_retrieval_mode_as_r(col: Path) -> None:
    runner = CliRunner()
    search = ["search", "marker3", "-c", str(col), "--json", "-k", "3"]
    short = runner.invoke(cli, [*search, "-r", "bm25"])
    assert _sources(short)[0].endswith("doc0003.md") and short.stderr == ""
    assert _sources(runner.invoke(cli, [*search, "--retrieval", "bm25"])) == _sources(short)
    dense = _sources(runner.invoke(cli, [*search, "-r", "dense"]))
    for old in ("--mode", "-m"):  # the old spelling: the same search, one line of warning
        again = runner.invoke(cli, [*search, old, "bm25"])
        assert _sources(again) == _sources(short)
        assert again.stderr == MODE_IS_RETRIEVAL + "\n"
    assert _sources(runner.invoke(cli, [*search, "-m", "dense"])) == dense
    both = runner.invoke(cli, [*search, "-r", "bm25", "--mode", "dense"])
    assert both.exit_code == 2 and "not both" in both.output
    assert "--mode" not in runner.invoke(cli, ["search", "--help"]).output  # hidden


def test_eval_retrieval_takes_repeated_r_and_the_old_mode(tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "tiny")
    runner = CliRunner()
    base = ["eval", "retrieval", "--data-dir", str(beir), "--encoder", "hashing-1024",
            "-c", str(tmp_path / "col")]

    def modes(*args: str, out: str) -> list[str]:
        result = runner.invoke(cli, [*base, *args, "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
        return list(json.loads((tmp_path / out / "results.json").read_text())["modes"])

    assert modes("-r", "bm25", "--retrieval", "dense", out="new") == ["bm25", "dense"]
    old = runner.invoke(cli, [*base, "-m", "bm25", "--mode", "dense", "--out",
                              str(tmp_path / "old")])
    assert old.exit_code == 0 and old.stderr.startswith(MODE_IS_RETRIEVAL + "\n")
    assert old.stderr.count(MODE_IS_RETRIEVAL) == 1
    assert list(json.loads((tmp_path / "old" / "results.json").read_text())["modes"]) == [
        "bm25", "dense"]
    assert modes(out="default") == ["dense", "bm25", "hybrid"]
    both = runner.invoke(cli, [*base, "-r", "bm25", "-m", "dense"])
    assert both.exit_code == 2 and "not both" in both.output


def test_qa_mode_names_round_trip() -> None:
    for name in QA_MODES:
        mode, decoding = split_qa_mode(name)
        assert qa_mode_name(mode, "free" if decoding == "thorough" else decoding) == name
    with pytest.raises(ValueError, match="rag-token decodes free, not 'grounded'"):
        qa_mode_name("rag-token", "grounded")


@pytest.mark.parametrize(("modes", "decodings", "runs"), [
    ((), (), ["stuff-grounded"]),  # ask's default decoding
    (("rag-sequence", "rag-token"), (), ["rag-sequence-grounded", "rag-token"]),
    (("stuff", "rag-sequence", "rag-token"), ("grounded", "fast"),
     ["stuff-grounded", "rag-sequence-grounded", "rag-sequence-fast"]),
    (("stuff", "rag-sequence", "rag-token"), ("free",), ["stuff", "rag-sequence", "rag-token"]),
    (("rag-sequence",), ("free", "thorough"), ["rag-sequence"]),  # one run, not two
    (("rag-sequence-fast", "stuff"), (), ["rag-sequence-fast", "stuff-grounded"]),
])
def test_eval_qa_runs_the_valid_pairs_of_modes_and_decodings(modes, decodings, runs) -> None:
    assert qa_runs(modes, decodings) == runs


@pytest.fixture
def captured(monkeypatch) -> dict:
    """eval qa's call of run_qa_eval, recorded instead of run."""
    calls: dict = {}

    def record(collection, generator, questions, out_dir, **options):
        calls.update(options)
        raise SystemExit(0)

    monkeypatch.setattr(ragmix.evaluation.qa_eval, "run_qa_eval", record)
    monkeypatch.setattr(ragmix.generation, "load_generator",
                        lambda spec, **options: _Generator({}))
    return calls


def _eval_qa(tmp_path: Path, *args: str):
    beir = tmp_path / "tiny"
    if not beir.exists():
        write_beir(beir)
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"question": "what flows?", "answer": ["lava"]}) + "\n")
    return CliRunner().invoke(cli, ["eval", "qa", "--questions", str(questions), "--corpus",
                                    str(beir / "corpus.jsonl"), "--encoder", "hashing-1024",
                                    "--out", str(tmp_path / "out"), *args])


def test_eval_qa_crosses_modes_and_decodings(tmp_path: Path, captured: dict) -> None:
    result = _eval_qa(tmp_path, "-m", "stuff", "-m", "rag-sequence", "-m", "rag-token",
                      "--decoding", "grounded", "--decoding", "fast", "-r", "bm25")
    assert result.exit_code == 0, result.output
    assert captured["runs"] == ["stuff-grounded", "rag-sequence-grounded", "rag-sequence-fast"]
    assert captured["retrieval"] == "bm25" and result.stderr.count("is now") == 0


def test_eval_qa_refuses_a_decoding_no_mode_has(tmp_path: Path, captured: dict) -> None:
    result = _eval_qa(tmp_path, "-m", "stuff", "-m", "rag-token", "--decoding", "fast")
    assert result.exit_code == 2
    assert "--decoding fast fits none of -m stuff, rag-token; it works with -m rag-sequence" in (
        " ".join(result.output.split()))
    assert captured == {}
    nonsense = _eval_qa(tmp_path, "-m", "rag-sequence-slow")
    assert nonsense.exit_code == 2 and "rag-sequence-slow" in nonsense.output


def test_eval_qa_keeps_the_old_one_word_names(tmp_path: Path, captured: dict) -> None:
    result = _eval_qa(tmp_path, "-m", "rag-sequence-fast", "--mode", "stuff-grounded")
    assert result.exit_code == 0, result.output
    assert captured["runs"] == ["rag-sequence-fast", "stuff-grounded"]
    assert result.stderr.splitlines()[0] == ("-m rag-sequence-fast is now -m rag-sequence "
                                             "--decoding fast; -m stuff-grounded is now -m "
                                             "stuff --decoding grounded")
    mixed = _eval_qa(tmp_path, "-m", "rag-sequence-fast", "--decoding", "grounded")
    assert mixed.exit_code == 2 and "names its decoding already" in mixed.output
    listed = CliRunner().invoke(cli, ["eval", "qa", "--help"]).output
    assert "-m, --mode [stuff|rag-sequence|rag-token]\n" in listed  # the old names unlisted
