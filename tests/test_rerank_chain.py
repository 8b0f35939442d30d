"""Rerankers in turn: the spec, the chain against nested reranked searches, the CLI and server."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from reranker_contract import QUERY, TEXTS, hits

from ragmix.errors import BadInputError
from ragmix.rerank import RerankChain, RerankedSearch, ScoreReranker, parse_rerank_spec
from ragmix.rerank.chain import RerankStage, chain_models, with_weight


class Lengths:
    """Shorter passages score higher: an order the first stage does not give."""

    name = "short"

    def score(self, query, texts):
        return -np.array([len(t) for t in texts], dtype=np.float64)


class Overlap:
    """Words shared with the query."""

    name = "overlap"
    tau = 0.5

    def score(self, query, texts):
        words = set(query.lower().split())
        return np.array([len(words & set(t.lower().split())) for t in texts], dtype=np.float64)


class Fixed:
    """A first stage that returns the same hits for any query."""

    def __init__(self, found):
        self.found = found

    def search(self, query, k, *, mode):
        return self.found[:k]


def test_spec_names_each_reranker_with_its_weight():
    assert parse_rerank_spec("late-interaction") == (RerankStage("late-interaction", 1.0),)
    assert parse_rerank_spec(" query-likelihood@0.7 , late-interaction@0.3") == (
        RerankStage("query-likelihood", 0.7), RerankStage("late-interaction", 0.3))


@pytest.mark.parametrize("spec, named", [
    ("colbert", "'colbert'"), ("late-interaction@x", "'x'"), ("late-interaction@1.5", "'1.5'"),
    ("query-likelihood,", "''"), ("", "''")])
def test_a_bad_spec_is_refused_naming_the_bad_part_and_the_form(spec, named):
    with pytest.raises(BadInputError) as info:
        parse_rerank_spec(spec)
    said = str(info.value)
    assert named in said and "query-likelihood@0.7,late-interaction@0.3" in said


def test_the_chain_ranks_as_nested_reranked_searches_do():
    first = hits()
    one, two = ScoreReranker(Lengths(), weight=0.7), ScoreReranker(Overlap(), weight=0.3)
    nested = RerankedSearch(RerankedSearch(Fixed(first), one, depth=5), two, depth=5)
    chained = RerankedSearch(Fixed(first), RerankChain([one, two]), depth=5)
    expect, got = nested.search(QUERY, 3, mode="hybrid"), chained.search(QUERY, 3, mode="hybrid")
    assert [(h.chunk_id, h.score, h.rank) for h in got] == [
        (h.chunk_id, h.score, h.rank) for h in expect]
    # by hand: 0.3 overlap + 0.7 (0.7 length + 0.3 first stage), each min-max over the five
    def minmax(x):
        x = np.asarray(x, dtype=np.float64)
        return (x - x.min()) / (x.max() - x.min())
    stage1 = 0.7 * minmax(Lengths().score(QUERY, TEXTS)) + 0.3 * minmax([h.score for h in first])
    final = 0.3 * minmax(Overlap().score(QUERY, TEXTS)) + 0.7 * minmax(stage1)
    assert [h.chunk_id for h in got] == [100 + i for i in np.argsort(-final, kind="stable")[:3]]
    np.testing.assert_allclose([h.score for h in got], np.sort(final)[::-1][:3])


def test_the_chain_keeps_the_first_stage_and_passages_and_takes_the_last_tau():
    chain = RerankChain([ScoreReranker(Lengths()), ScoreReranker(Overlap())])
    got = chain.rerank(QUERY, hits(), 2)
    by_id = {h.chunk_id: h for h in hits()}
    assert len(got) == 2 and [h.rank for h in got] == [1, 2]
    for h in got:
        before = by_id[h.chunk_id]
        assert (h.text, h.source, h.start, h.end, h.retrieval_score) == (
            before.text, before.source, before.start, before.end, before.score)
    assert chain.name == "short,overlap" and chain.tau == 0.5
    assert chain.rerank(QUERY, [], 3) == []


def test_a_chain_refuses_nothing_to_chain_and_a_bad_k():
    with pytest.raises(BadInputError, match="at least one"):
        RerankChain([])
    with pytest.raises(BadInputError, match="not a Reranker"):
        RerankChain([Lengths()])
    with pytest.raises(BadInputError, match="k must be > 0"):
        RerankChain([ScoreReranker(Lengths())]).rerank(QUERY, hits(), 0)


def test_a_weight_option_applies_to_one_reranker_without_its_own():
    assert with_weight("late-interaction", 0.5) == "late-interaction@0.5"
    assert with_weight("late-interaction@0.3,query-likelihood", 1.0).endswith("query-likelihood")
    for spec in ("late-interaction@0.3", "late-interaction,query-likelihood"):
        with pytest.raises(BadInputError, match="NAME@WEIGHT"):
            with_weight(spec, 0.5)


def test_models_are_one_per_reranker_and_a_cross_encoder_needs_one():
    assert chain_models("late-interaction,query-likelihood", ["default", "m"]) == [
        (RerankStage("late-interaction"), None), (RerankStage("query-likelihood"), "m")]
    with pytest.raises(BadInputError, match="2 reranker.* 1 --rerank-model"):
        chain_models("late-interaction,query-likelihood", ["m"])
    with pytest.raises(BadInputError, match="ragmix train reranker"):
        chain_models("late-interaction,cross-encoder@0.5")


@pytest.fixture
def col(tmp_path, corpus):
    from ragmix.cli.main import cli

    col = tmp_path / "col"
    result = CliRunner().invoke(cli, ["index", str(corpus), "-c", str(col),
                                      "--encoder", "hashing-1024"])
    assert result.exit_code == 0, result.output
    return col


def test_search_runs_a_chain_from_the_cli_as_the_library_does(col, tmp_path):
    from ragmix.cli.main import cli
    from ragmix.rerank import load_rerank_chain
    from ragmix.store import Collection
    from ragmix.testing import tiny_random_generator

    gen = tiny_random_generator(seed=5)
    folder = tmp_path / "tiny-lm"
    gen.model.save_pretrained(folder)
    gen.tokenizer.save_pretrained(folder)
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
    from ragmix.cli.main import cli

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


def test_eval_retrieval_labels_a_chained_run(tmp_path):
    from ragmix.cli.main import cli
    from ragmix.testing import tiny_random_generator

    gen = tiny_random_generator(seed=5)
    folder = tmp_path / "tiny-lm"
    gen.model.save_pretrained(folder)
    gen.tokenizer.save_pretrained(folder)
    data = tmp_path / "beir"
    (data / "qrels").mkdir(parents=True)
    docs = {f"d{i}": f"Document {i} is about marker{i} and nothing else." for i in range(8)}
    (data / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in docs.items()))
    (data / "queries.jsonl").write_text("".join(
        json.dumps({"_id": f"q{i}", "text": f"what is about marker{i}?"}) + "\n" for i in range(3)))
    (data / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(3)))
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


def test_a_weight_reaches_the_reranker_exactly_and_spaces_are_forgiven():
    (stage,) = parse_rerank_spec(with_weight("late-interaction", 0.123456789))
    assert stage.weight == 0.123456789
    assert parse_rerank_spec("late-interaction @0.3 , query-likelihood") == (
        RerankStage("late-interaction", 0.3), RerankStage("query-likelihood", 1.0))


def test_the_server_refuses_an_unreadable_late_interaction_model_at_start(col, tmp_path):
    from pathlib import Path

    from ragmix.server.settings import ServerSettings

    empty = tmp_path / "not-a-model"
    empty.mkdir()
    for model in (str(empty), Path(empty), [Path(empty)]):
        with pytest.raises(BadInputError, match="not-a-model"):
            ServerSettings.build([col], data_dir=tmp_path / "serve", reranker="late-interaction",
                                 rerank_model=model)
