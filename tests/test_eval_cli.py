"""`ragmix eval retrieval` end to end on a tiny BEIR folder, and the pieces under it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ragmix.cli.eval_cmd import eval_group
from ragmix.cli.main import cli
from ragmix.errors import BadInputError, CollectionError
from ragmix.evaluation.datasets import load_beir, load_qa, load_qrels, qa_retrieval_split
from ragmix.evaluation.run_retrieval import evaluate_retrieval, index_corpus, pool_documents
from ragmix.types import Hit

if "eval" not in cli.commands:  # until cli/main.py registers it
    cli.add_command(eval_group)

DOCS = {
    "d1": ("Volcanoes", "Lava flows from the volcano crater during an eruption."),
    "d2": ("Glaciers", "Glaciers carve valleys as the ice moves slowly downhill."),
    "d3": ("Tides", "The moon pulls the ocean and makes the tides rise and fall."),
    "d4": ("Deserts", "Sand dunes shift in the desert wind under a hot sun."),
    # long enough for two 100-word passages: one document, two chunks
    "d5": ("Forests", " ".join(["Rainforest canopy trees hold rain and birds."] * 150)),
}
QUERIES = {"q1": "volcano eruption lava", "q2": "ocean tides moon", "q3": "rainforest canopy birds",
           "q9": "not judged"}
QRELS = [("q1", "d1", 1), ("q2", "d3", 2), ("q3", "d5", 1)]


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as fh:
        for doc_id, (title, text) in DOCS.items():
            fh.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as fh:
        for qid, text in QUERIES.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    rows = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{s}" for q, d, s in QRELS)]
    (folder / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny")


def _eval(runner: CliRunner, *args: str):
    return runner.invoke(cli, ["eval", "retrieval", "--encoder", "hashing-1024", *args])


def test_eval_retrieval_end_to_end(tmp_path: Path, beir: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    result = _eval(runner, "--corpus", str(beir / "corpus.jsonl"), "--queries",
                   str(beir / "queries.jsonl"), "--qrels", str(beir / "qrels" / "test.tsv"),
                   "-r", "bm25", "-r", "hybrid", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "nDCG@10" in result.output and "R@100" in result.output

    data = json.loads((out / "results.json").read_text())
    assert set(data["modes"]) == {"bm25", "hybrid"}
    bm25 = data["modes"]["bm25"]
    assert bm25["n_queries"] == 3 and set(bm25["per_query"]) == {"q1", "q2", "q3"}
    # BM25 puts each query's one relevant document first
    assert bm25["metrics"]["mrr@10"] == 1.0 and bm25["metrics"]["ndcg@10"] == 1.0
    assert all(q["recall@1"] == 1.0 and q["latency_ms"] > 0 for q in bm25["per_query"].values())
    assert data["collection"]["documents"] == 5 and data["collection"]["chunks"] == 7  # d5: 3 (1,051 words, cut every 512)
    report = (out / "report.md").read_text()
    assert report.startswith("# ragmix retrieval evaluation") and "| bm25 | 1.0000 |" in report
    # the plots are real PNGs, and the report shows them
    for png in ("recall_at_k.png", "latency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({png})" in report


def test_data_dir_reuses_the_collection(tmp_path: Path, beir: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    first = _eval(runner, "--data-dir", str(beir), "-r", "bm25", "--out", str(out))
    assert first.exit_code == 0, first.output
    assert "building collection" in first.output
    collection = out / "collection-tiny-hashing-1024"
    assert (collection / "manifest.json").exists()
    # the collection's own encoder is used when --encoder is left out
    again = runner.invoke(cli, ["eval", "retrieval", "--data-dir", str(beir), "-r", "dense",
                                "--limit", "2", "--collection", str(collection),
                                "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert "updating collection" in again.output
    data = json.loads((out / "results.json").read_text())
    assert data["modes"]["dense"]["n_queries"] == 2 and data["data"]["limit"] == 2


def test_usage_errors_are_clean(tmp_path: Path, beir: Path) -> None:
    runner = CliRunner()
    both = _eval(runner, "--data-dir", str(beir), "--corpus", str(beir / "corpus.jsonl"))
    assert both.exit_code == 2 and "--data-dir replaces --corpus" in both.output
    partial = _eval(runner, "--corpus", str(beir / "corpus.jsonl"))
    assert partial.exit_code == 2 and "missing --queries, --qrels" in partial.output
    no_split = _eval(runner, "--data-dir", str(beir), "--split", "dev")
    assert no_split.exit_code == 1 and "no 'dev' split" in no_split.output
    col = tmp_path / "col"
    assert _eval(runner, "--data-dir", str(beir), "-r", "bm25", "-c", str(col),
                 "--out", str(tmp_path / "o")).exit_code == 0
    other = runner.invoke(cli, ["eval", "retrieval", "--data-dir", str(beir), "-c", str(col),
                                "--encoder", "hashing-32", "--out", str(tmp_path / "o")])
    assert other.exit_code == 1 and "built with encoder 'hashing-1024'" in other.output
    assert "Traceback" not in other.output


def test_pooling_counts_a_document_once_at_its_best_chunk() -> None:
    hits = [Hit(1, "a", "", 3.0, 0, 1), Hit(2, "b", "", 2.0, 0, 2), Hit(3, "a", "", 1.5, 0, 3),
            Hit(4, "c", "", 1.0, 0, 4)]
    assert pool_documents(hits, 10) == {"a": 3.0, "b": 2.0, "c": 1.0}
    assert pool_documents(hits, 2) == {"a": 3.0, "b": 2.0}


class _ScriptedSearcher:
    """Returns fixed hits and records the depth it was asked for."""

    def __init__(self, hits: list[Hit]) -> None:
        self.hits, self.calls = hits, []

    def search(self, query: str, k: int, *, mode: str) -> list[Hit]:
        self.calls.append((query, k, mode))
        return self.hits[:k]


class _Recorder:
    def __init__(self) -> None:
        self.events = []

    def start(self, stage, total):
        self.events.append(("start", stage, total))

    def advance(self, stage, n=1):
        self.events.append(("advance", stage, n))


def test_evaluate_retrieval_with_a_fake_searcher() -> None:
    searcher = _ScriptedSearcher([Hit(1, "x", "", 0.9, 0, 1), Hit(2, "x", "", 0.8, 0, 2),
                                  Hit(3, "a", "", 0.5, 0, 3)])
    progress = _Recorder()
    report = evaluate_retrieval(searcher, {"q": "text"}, {"q": {"a": 1}}, mode="bm25", k=10,
                                progress=progress)
    assert searcher.calls == [("text", 30, "bm25")]  # 3 chunks per document wanted
    # x's two chunks pool into rank 1, so a is the second document: MRR 1/2
    assert report.metrics["mrr@10"] == 0.5 and report.metrics["recall@1"] == 0.0
    assert set(report.latency_s) == {"q"}
    assert progress.events == [("start", "searching (bm25)", 1), ("advance", "searching (bm25)", 1)]
    with pytest.raises(BadInputError, match="have no text"):
        evaluate_retrieval(searcher, {}, {"q": {"a": 1}}, mode="bm25")
    # ks default to the cut-offs up to k
    assert set(report.metrics) == {f"{m}@{c}" for m in ("ndcg", "mrr", "recall")
                                   for c in (1, 5, 10)}
    with pytest.raises(BadInputError, match="ks go up to 20"):
        evaluate_retrieval(searcher, {"q": "t"}, {"q": {"a": 1}}, mode="bm25", k=10, ks=(20,))
    with pytest.raises(BadInputError, match="chunk_depth"):
        evaluate_retrieval(searcher, {"q": "t"}, {"q": {"a": 1}}, mode="bm25", k=10, chunk_depth=5)


def test_index_corpus_refuses_a_mixed_collection(tmp_path: Path, beir: Path) -> None:
    col, report = index_corpus(tmp_path / "col", beir / "corpus.jsonl", encoder="hashing-64")
    col.close()
    assert report.added == 5
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"_id": "z", "title": "", "text": "something else"}) + "\n")
    with pytest.raises(CollectionError, match="holds 6 documents"):
        index_corpus(tmp_path / "col", other)


def test_index_corpus_refuses_a_collection_chunked_otherwise(tmp_path: Path, beir: Path) -> None:
    from ragmix.chunking import make_chunker

    semantic = make_chunker("semantic", encoder="hashing-64", max_tokens=20)
    col, report = index_corpus(tmp_path / "col", beir / "corpus.jsonl", encoder="hashing-64",
                               chunker=semantic)
    assert col.manifest.chunker == semantic.settings() and report.chunks > report.added
    col.close()
    with pytest.raises(CollectionError, match="is chunked by .*semantic.* not .*words"):
        index_corpus(tmp_path / "col", beir / "corpus.jsonl")
    index_corpus(tmp_path / "col", beir / "corpus.jsonl", chunker=semantic)[0].close()


def test_load_beir(beir: Path) -> None:
    corpus, queries, qrels = load_beir(beir)
    assert corpus == beir / "corpus.jsonl"
    assert queries == {"q1": "volcano eruption lava", "q2": "ocean tides moon",
                       "q3": "rainforest canopy birds"}  # q9 is not judged
    assert qrels["q2"] == {"d3": 2}
    with pytest.raises(BadInputError, match="no 'dev' split .* has \\['test'\\]"):
        load_beir(beir, "dev")
    (beir / "qrels" / "test.tsv").write_text("q7\td1\t1\n")
    with pytest.raises(BadInputError, match="have no text in the queries file"):
        load_beir(beir)


def test_load_qrels_formats(tmp_path: Path) -> None:
    trec = tmp_path / "trec.txt"
    trec.write_text("q1 0 d1 1\nq1 0 d2 0\n")
    assert load_qrels(trec) == {"q1": {"d1": 1, "d2": 0}}
    bad = tmp_path / "bad.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\nq1\td1\thigh\n")
    with pytest.raises(BadInputError, match=r"bad.tsv:2: relevance must be an integer"):
        load_qrels(bad)


def test_load_qa(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join([
        json.dumps({"id": "s1", "question": "Q1?", "answers": ["a", "b"], "gold_paragraph": "p1"}),
        json.dumps({"question": " Q2? ", "answer": ["c"]}),
        "",
        json.dumps({"question": "Q3?", "answer": "d"}),
    ]) + "\n")
    examples = load_qa(path)
    assert [(e.id, e.question, e.answers) for e in examples] == [
        ("s1", "Q1?", ("a", "b")), ("line-2", "Q2?", ("c",)), ("line-4", "Q3?", ("d",))]
    assert qa_retrieval_split(examples) == ({"s1": "Q1?"}, {"s1": {"p1": 1}})
    for line, message in [("{not json", "qa.jsonl:2: not valid JSON"),
                          (json.dumps({"question": "Q"}), "qa.jsonl:2: \"answers\""),
                          (json.dumps({"question": "Q", "answers": []}), "qa.jsonl:2: \"answers\""),
                          (json.dumps({"answers": ["a"]}), "qa.jsonl:2: \"question\""),
                          ("[1, 2]", "qa.jsonl:2: expected a JSON object")]:
        path.write_text(json.dumps({"question": "ok", "answer": "x"}) + "\n" + line + "\n")
        with pytest.raises(BadInputError, match=message):
            load_qa(path)


def test_shared_datasets_load() -> None:
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not data.is_dir():
        pytest.skip("../shared/data is not present")
    _, queries, qrels = load_beir(data / "scifact")
    assert len(queries) == 300 and sum(len(v) for v in qrels.values()) == 339
    assert len(load_qa(data / "squad-open" / "dev-questions.jsonl")) == 5665
    assert len(load_qa(data / "nq-open" / "NQ-open.dev.jsonl")) == 3610


def test_run_retrieval_eval_is_the_library_under_the_command(tmp_path: Path, beir: Path) -> None:
    from ragmix.evaluation.retrieval_eval import run_retrieval_eval

    corpus, queries, qrels = load_beir(beir)
    col, _ = index_corpus(tmp_path / "col", corpus, encoder="hashing-1024")
    with col:
        with pytest.raises(BadInputError, match="'sparse'"):
            run_retrieval_eval(col, queries, qrels, tmp_path / "bad", modes=["bm25", "sparse"])
        result = run_retrieval_eval(col, queries, qrels, tmp_path / "out", modes=["bm25", "hybrid"],
                                    fusion="rrf", data={"corpus": corpus, "limit": None},
                                    settings={"dtype": "float32"})
    assert list(result.reports) == ["bm25", "hybrid-rrf"]
    assert (result.n_queries, result.documents) == (3, 5)
    assert result.reports["bm25"].metrics["recall@1"] == 1.0  # each query's words are its doc's
    written = json.loads(result.results_path.read_text())
    assert written["data"] == {"corpus": str(corpus), "limit": None, "judged_queries": 3}
    assert written["settings"]["fusion"] == "rrf" and written["settings"]["dtype"] == "float32"
    assert "hybrid-rrf" in result.report_path.read_text()
    assert not (tmp_path / "bad").exists()  # a bad mode is refused before anything runs
