"""Two-stage retrieval from the CLI: --rerank on search, ask and eval, rerank-store, semantic chunking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ragmix.cli.main import cli
from ragmix.errors import BadInputError
from ragmix.rerank.query_likelihood import QueryLikelihoodScorer
from ragmix.testing import tiny_random_generator


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory) -> Path:
    """A tiny random causal LM saved as a local model folder, as a user's would be."""
    gen = tiny_random_generator(seed=5)
    folder = tmp_path_factory.mktemp("tiny-lm")
    gen.model.save_pretrained(folder)
    gen.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def col(tmp_path: Path, corpus: Path) -> Path:
    col = tmp_path / "col"
    result = CliRunner().invoke(cli, ["index", str(corpus), "-c", str(col), "--encoder", "hashing-1024"])
    assert result.exit_code == 0, result.output
    return col


def test_search_reranks_the_first_stage_with_query_likelihood(col, generator_dir):
    runner = CliRunner()
    plain = json.loads(runner.invoke(cli, ["search", "marker3 marker4", "-c", str(col), "--json",
                                           "-k", "6", "-r", "dense"]).output)
    result = runner.invoke(cli, ["search", "marker3 marker4", "-c", str(col), "--json", "-k", "3",
                                 "-r", "dense", "--rerank", "query-likelihood",
                                 "--rerank-model", str(generator_dir), "--rerank-depth", "6"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert len(hits) == 3 and [h["rank"] for h in hits] == [1, 2, 3]
    first = {h["chunk_id"]: h["score"] for h in plain}
    assert all(first[h["chunk_id"]] == h["retrieval_score"] for h in hits)
    from ragmix.generation import load_generator

    scorer = QueryLikelihoodScorer(load_generator(str(generator_dir)))
    expect = scorer.score("marker3 marker4", [h["text"] for h in plain])
    best = sorted(zip(expect, [h["chunk_id"] for h in plain]), key=lambda p: -p[0])[:3]
    assert [h["chunk_id"] for h in hits] == [cid for _, cid in best]


def test_rerank_options_without_rerank_are_refused(col):
    result = CliRunner().invoke(cli, ["search", "marker3", "-c", str(col), "--rerank-weight", "0.5"])
    assert result.exit_code == 2 and "need --rerank NAME" in result.output


def test_a_cross_encoder_without_a_model_says_how_to_get_one(col):
    result = CliRunner().invoke(cli, ["search", "marker3", "-c", str(col), "--rerank", "cross-encoder"])
    assert result.exit_code != 0 and "ragmix train reranker" in result.output


def marker_beir(folder: Path) -> Path:
    """A BEIR folder of 8 documents and 3 test queries, each judging its marker document."""
    (folder / "qrels").mkdir(parents=True)
    docs = {f"d{i}": f"Document {i} is about marker{i} and nothing else." for i in range(8)}
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in docs.items()))
    (folder / "queries.jsonl").write_text("".join(
        json.dumps({"_id": f"q{i}", "text": f"what is about marker{i}?"}) + "\n" for i in range(3)))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(3)))
    return folder


def test_eval_retrieval_labels_the_reranked_run(tmp_path, generator_dir):
    data = marker_beir(tmp_path / "beir")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "eval", "retrieval", "--data-dir", str(data), "-r", "bm25", "--encoder", "hashing-64",
        "--rerank", "query-likelihood", "--rerank-model", str(generator_dir),
        "--rerank-depth", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert list(results["modes"]) == [f"bm25+query-likelihood:{generator_dir.name}"]
    assert results["settings"]["rerank"] == "query-likelihood"
    assert results["settings"]["rerank_depth"] == 4


def test_rerank_store_then_search_reads_token_vectors_from_the_collection(col, torch, tmp_path):
    from test_rerank_late_interaction import tiny_bert_folder

    from ragmix.rerank import token_store_dir
    from ragmix.rerank.token_store import TokenStore

    model = tiny_bert_folder(torch, tmp_path / "tiny-bert")
    runner = CliRunner()
    stored = runner.invoke(cli, ["rerank-store", "-c", str(col), "--rerank-model", str(model),
                                 "--dtype", "float32"])
    assert stored.exit_code == 0, stored.output
    assert "stored 36 new passages" in stored.output
    where = token_store_dir(col, model, dtype="float32")
    assert where.is_relative_to(col) and (where / "meta.json").is_file()
    again = runner.invoke(cli, ["rerank-store", "-c", str(col), "--rerank-model", str(model),
                                "--dtype", "float32"])
    assert "stored 0 new passages" in again.output
    found = runner.invoke(cli, ["search", "marker3", "-c", str(col), "--json", "-k", "2",
                                "--rerank", "late-interaction", "--rerank-model", str(model),
                                "--dtype", "float32"])
    assert found.exit_code == 0, found.output
    assert len(json.loads(found.output)) == 2
    meta = json.loads((where / "meta.json").read_text())
    with TokenStore(where, dim=meta["dim"], model_fingerprint=meta["model_fingerprint"]) as store:
        assert len(store) == 36  # search read them; nothing new was added


def test_index_with_the_semantic_chunker_caps_chunks_in_tokens(tmp_path, corpus):
    col = tmp_path / "sem"
    result = CliRunner().invoke(cli, ["index", str(corpus), "-c", str(col), "--encoder",
                                      "hashing-256", "--chunker", "semantic", "--chunk-size", "40",
                                      "--breakpoint-percentile", "80"])
    assert result.exit_code == 0, result.output
    from ragmix.store import Collection

    with Collection.open(col) as opened:
        settings = opened.manifest.chunker
        assert settings["name"] == "semantic" and settings["max_tokens"] == 40
        assert settings["percentile"] == 80 and settings["encoder"] == "hashing-256"
    bad = CliRunner().invoke(cli, ["index", str(corpus), "-c", str(tmp_path / "x"),
                                   "--chunker", "words", "--breakpoint-percentile", "80"])
    assert bad.exit_code == 2 and "semantic chunker only" in bad.output


# rerank chains: --rerank NAME@W,NAME@W from the CLI and ragmix serve's settings

def test_search_runs_a_chain_from_the_cli_as_the_library_does(col, generator_dir):
    from ragmix.rerank import RerankChain, load_rerank_chain
    from ragmix.store import Collection

    folder = generator_dir
    spec = "query-likelihood@0.6,query-likelihood@0.5"
    result = CliRunner().invoke(cli, [
        "search", "marker3 marker4", "-c", str(col), "--json", "-k", "3", "-r", "dense",
        "--rerank", spec, "--rerank-model", str(folder), "--rerank-model", str(folder),
        "--rerank-depth", "6", "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    chain = load_rerank_chain(spec, models=[str(folder)] * 2, dtype="float32")
    assert isinstance(chain, RerankChain)
    with Collection.open(col) as opened:
        expect = opened.search("marker3 marker4", 3, mode="dense", rerank=chain, rerank_depth=6)
    assert [h["chunk_id"] for h in found] == [h.chunk_id for h in expect]
    np.testing.assert_allclose([h["score"] for h in found], [h.score for h in expect])


@pytest.mark.parametrize("args, said", [
    (["--rerank", "colbert"], "unknown reranker 'colbert'"),
    (["--rerank", "late-interaction,query-likelihood", "--rerank-weight", "0.5"], "NAME@WEIGHT"),
    (["--rerank", "late-interaction,query-likelihood", "--rerank-model", "m"],
     "one per reranker")])
def test_the_cli_refuses_a_bad_chain_saying_why(col, args, said):
    result = CliRunner().invoke(cli, ["search", "marker3", "-c", str(col), *args])
    assert result.exit_code != 0 and said in result.output, result.output


def test_the_server_builds_a_chain_and_refuses_a_bad_one_at_start(col, tmp_path):
    from ragmix.server.settings import ServerSettings

    data = tmp_path / "serve"
    settings = ServerSettings.build([col], data_dir=data,
                                    reranker="late-interaction@0.5,query-likelihood@0.5")
    assert callable(settings.reranker)
    with pytest.raises(BadInputError, match="ragmix train reranker"):
        ServerSettings.build([col], data_dir=data, reranker="late-interaction,cross-encoder")
    with pytest.raises(BadInputError, match="NAME@WEIGHT"):
        ServerSettings.build([col], data_dir=data, reranker="late-interaction@0.3",
                             rerank_weight=0.5)


def test_eval_retrieval_labels_a_chained_run(tmp_path, generator_dir):
    folder = generator_dir
    data = marker_beir(tmp_path / "beir")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [
        "eval", "retrieval", "--data-dir", str(data), "-r", "bm25", "--encoder", "hashing-64",
        "--rerank", "query-likelihood@0.5,query-likelihood", "--rerank-model", str(folder),
        "--rerank-model", "default", "--rerank-depth", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert list(results["modes"]) == [
        f"bm25+query-likelihood:{folder.name}@0.5,query-likelihood:SmolLM2-135M-Instruct"]
    assert results["settings"]["rerank"] == "query-likelihood@0.5,query-likelihood"
    assert results["settings"]["rerank_model"] == f"{folder},default"
    assert results["settings"]["rerank_weight"] is None  # the spec's @WEIGHTs say it


def test_the_server_refuses_an_unreadable_late_interaction_model_at_start(col, tmp_path):
    from pathlib import Path

    from ragmix.server.settings import ServerSettings

    empty = tmp_path / "not-a-model"
    empty.mkdir()
    for model in (str(empty), Path(empty), [Path(empty)]):
        with pytest.raises(BadInputError, match="not-a-model"):
            ServerSettings.build([col], data_dir=tmp_path / "serve", reranker="late-interaction",
                                 rerank_model=model)
