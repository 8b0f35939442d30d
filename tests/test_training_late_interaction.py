"""Late-interaction training: the loss falls, the folder scores as trained, resume, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_rerank_late_interaction import tiny_wordpiece

from ragmix.errors import BadInputError
from ragmix.rerank.late_interaction import LateInteractionSettings
from ragmix.training.pairs import TrainingSet, TrainPair
from ragmix.training.retriever_config import RetrieverTrainConfig

SETTINGS = LateInteractionSettings(dim=16, query_length=16)


def _toy_set() -> TrainingSet:
    topics = ["volcano lava eruption", "piano music concert", "rocket orbit launch",
              "bread flour oven", "river delta flood", "chess opening gambit"]
    corpus, pairs = {}, []
    for i, topic in enumerate(topics):
        corpus[f"d{i}"] = f"{topic} {topic} facts and history about the {topic.split()[0]}."
        corpus[f"n{i}"] = f"{topic.split()[0]} trivia, unrelated gossip."
        pairs.append(TrainPair(f"q{i}", f"tell me about {topic}", (f"d{i}",), ()))
    return TrainingSet(tuple(pairs), corpus)


@pytest.fixture(scope="module")
def base(torch, tmp_path_factory):
    """A tiny random sentence-transformers folder (BERT, hidden 32) with a tiny WordPiece."""
    from tiny_models import tiny_sentence_transformer

    _, path = tiny_sentence_transformer(torch, tiny_wordpiece(),
                                        tmp_path_factory.mktemp("base"))
    return path


def _trainer(base, config, settings=SETTINGS):
    from sentence_transformers import SentenceTransformer

    from ragmix.training.late_interaction import late_interaction_trainer

    model = SentenceTransformer(str(base), device="cpu")  # a fresh copy: training changes it
    return late_interaction_trainer(base, _toy_set(), config, settings=settings, model=model)


def test_loss_falls_and_the_saved_folder_scores_as_it_was_trained(torch, base, tmp_path):
    from ragmix.rerank.late_interaction import LateInteractionScorer
    from ragmix.rerank.maxsim import maxsim_batch

    data = _toy_set()
    config = RetrieverTrainConfig(epochs=12, batch_size=6, chunk_size=4, lr=3e-3, warmup=0.0,
                                  temperature=0.5, negatives=("bm25",), max_seq_length=32)
    trainer = _trainer(base, config)
    report = trainer.train(tmp_path / "out")
    losses = [s.loss for s in report.log]
    assert report.steps == 12
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    saved = json.loads((tmp_path / "out" / "late_interaction.json").read_text())
    assert saved["dim"] == 16 and saved["projection"] == "projection.safetensors"
    assert len(json.loads((tmp_path / "out" / "ragmix_training.json").read_text())["log"]) == 12

    scorer = LateInteractionScorer(tmp_path / "out", dtype="float32")
    texts = [data.corpus[p.positives[0]] for p in data.pairs]
    scores = np.stack([scorer.score(p.query, texts) for p in data.pairs])  # (Q, P)
    assert (scores.argmax(axis=1) == np.arange(len(texts))).mean() >= 5 / 6
    assert scorer.query_vectors("x").shape[1] == 16
    scoring = trainer.scoring  # the trained model, in eval mode since training ended
    with torch.no_grad():
        q = scoring.embed_queries([p.query for p in data.pairs])  # (Q, Tq, D)
        d = scoring.embed_passages(texts)  # (P, Td, D)
        trained = maxsim_batch(q, q.abs().sum(-1) > 0, d, d.abs().sum(-1) > 0)  # (Q, P)
    np.testing.assert_allclose(scores, trained.numpy(), rtol=1e-4, atol=1e-4)


def test_resume_reproduces_an_uninterrupted_run_and_refuses_other_settings(torch, base,
                                                                           tmp_path):
    config = RetrieverTrainConfig(epochs=2, batch_size=3, chunk_size=2, lr=3e-3, warmup=0.0,
                                  temperature=0.5, negatives=("bm25", "model"),
                                  max_seq_length=32)
    straight = _trainer(base, config)
    uninterrupted = straight.train(tmp_path / "straight", checkpoint_every=1, max_steps=3)
    assert uninterrupted.steps == 3  # max_steps stops inside the second epoch

    class Crash(Exception):
        pass

    def crash(event, **info):
        if event == "step" and info["step"] == 2:
            raise Crash

    with pytest.raises(Crash):
        _trainer(base, config).train(tmp_path / "resumed", checkpoint_every=1, max_steps=3,
                                     progress=crash)
    other = LateInteractionSettings(dim=8, query_length=16)
    with pytest.raises(BadInputError, match="late_interaction differ"):
        _trainer(base, config, other).train(tmp_path / "resumed", max_steps=3)
    with pytest.raises(BadInputError, match="max_steps differ"):
        _trainer(base, config).train(tmp_path / "resumed", max_steps=4)
    resumed = _trainer(base, config)
    report = resumed.train(tmp_path / "resumed", checkpoint_every=1, max_steps=3)
    assert report.resumed_from == 2 and report.steps == 3
    assert [s.loss for s in report.log] == [s.loss for s in uninterrupted.log]
    for a, b in zip(straight.scoring.transformer.parameters(),
                    resumed.scoring.transformer.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(straight.scoring.projection.weight,
                               resumed.scoring.projection.weight, rtol=0, atol=0)


def test_two_towers_and_bad_settings_are_refused(base):
    with pytest.raises(BadInputError, match="shares one encoder"):
        _trainer(base, RetrieverTrainConfig(two_tower=True))
    with pytest.raises(BadInputError, match="query_length must be >= 2"):
        _trainer(base, RetrieverTrainConfig(), LateInteractionSettings(dim=8, query_length=1))


def _write_beir(folder, data: TrainingSet) -> None:
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as fh:
        for pid, text in data.corpus.items():
            fh.write(json.dumps({"_id": pid, "title": "", "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w") as fh:
        for pair in data.pairs:
            fh.write(json.dumps({"_id": pair.query_id, "text": pair.query}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{p.query_id}\t{p.positives[0]}\t1"
                                              for p in data.pairs]
    (folder / "qrels" / "train.tsv").write_text("\n".join(lines) + "\n")


def test_cli_trains_from_beir_and_the_reranker_loads_it(torch, base, tmp_path):
    from click.testing import CliRunner

    from ragmix.cli.main import cli
    from ragmix.rerank import load_reranker
    from ragmix.types import Hit

    _write_beir(tmp_path / "beir", _toy_set())
    runner = CliRunner()
    out = tmp_path / "model"
    args = ["train", "late-interaction", "--beir", str(tmp_path / "beir"), "--base", str(base),
            "--out", str(out), "--batch-size", "3", "--steps", "3", "--dim", "16",
            "--query-length", "16", "--max-seq-length", "32", "--dtype", "float32"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "trained 3 steps" in result.output and "16-d projection" in result.output
    reranker = load_reranker("late-interaction", model=out, dtype="float32")
    assert reranker.name == "late-interaction:model"
    hits = [Hit(chunk_id=i, doc_id=f"d{i}", text=t, score=1.0, prob=0.5, rank=i + 1)
            for i, t in enumerate(["volcano lava facts.", "bread flour oven."])]
    assert len(reranker.rerank("tell me about volcano lava", hits, 2)) == 2
    bad = runner.invoke(cli, ["train", "late-interaction", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "exactly one of --beir" in bad.output
