"""Cross-encoder training: the losses, hybrid-mined negatives, the trainer, resume, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_rerank_cross_encoder import tiny_cross_encoder

from ragmix.encoders import HashingEncoder
from ragmix.errors import BadInputError
from ragmix.training.pairs import TrainingSet, TrainPair
from ragmix.training.reranker_config import RerankerTrainConfig

TOPICS = ["volcano lava eruption", "piano music concert", "rocket orbit launch",
          "bread flour oven", "river delta flood", "chess opening gambit"]


def toy_set() -> TrainingSet:
    """Six queries, each with one positive and a near miss sharing its first word."""
    corpus, pairs = {}, []
    for i, topic in enumerate(TOPICS):
        corpus[f"d{i}"] = f"{topic} {topic} facts and history about the {topic.split()[0]}"
        corpus[f"n{i}"] = f"{topic.split()[0]} trivia unrelated gossip"
        pairs.append(TrainPair(f"q{i}", f"tell me about {topic}", (f"d{i}",), ()))
    return TrainingSet(tuple(pairs), corpus)


VOCAB = sorted({w for text in [*toy_set().corpus.values(), *(p.query for p in toy_set().pairs)]
                for w in text.split()})


def trainer_for(torch, tmp_path, config, data=None):
    """A trainer over a fresh tiny random cross-encoder (as a new process would build it)."""
    from ragmix.training.reranker import RerankerTrainer

    model, tokenizer, _ = tiny_cross_encoder(torch, tmp_path / "base", words=VOCAB)
    return RerankerTrainer("tiny", data or toy_set(), config, model=model.train(),
                           tokenizer=tokenizer, mine_encoder=HashingEncoder(64))


def test_losses_equal_brute_force_loops(torch):
    from ragmix.training.reranker import bce_loss, listwise_loss

    scores = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = scores.numpy()
    bce = np.mean([-math.log(1 / (1 + math.exp(-s[b, g]))) if g == 0
                   else -math.log(1 - 1 / (1 + math.exp(-s[b, g])))
                   for b in range(3) for g in range(5)])
    listwise = np.mean([math.log(sum(math.exp(x) for x in s[b])) - s[b, 0] for b in range(3)])
    assert float(bce_loss(scores)) == pytest.approx(bce, rel=1e-12)
    assert float(listwise_loss(scores)) == pytest.approx(listwise, rel=1e-12)


def test_hybrid_negatives_never_hold_a_positive_or_an_answer():
    from ragmix.training.reranker import hybrid_negatives

    data = toy_set()
    corpus = {**data.corpus, "x0": "volcano lava Eruption in Iceland"}
    pairs = [*data.pairs, TrainPair("qa", "volcano lava", ("d0",), ("eruption",)),
             TrainPair("q2p", "volcano lava eruption piano", ("d0", "d1"))]
    mined = hybrid_negatives(pairs, corpus, HashingEncoder(64), count=20, depth=20)
    for pair in pairs:
        assert mined[pair.query_id], pair
        assert not set(mined[pair.query_id]) & set(pair.positives)
        assert len(set(mined[pair.query_id])) == len(mined[pair.query_id])
    assert {"n0", "x0"} <= set(mined["q0"])  # ranked high: they share words with the query
    assert "n0" in mined["qa"] and "x0" not in mined["qa"]  # x0 holds the answer


def test_groups_are_the_positive_then_safe_negatives_topped_up_at_random(torch, tmp_path):
    import random

    data = toy_set()
    corpus = {**data.corpus, "x0": "it erupted in Iceland"}
    pairs = (*data.pairs, TrainPair("qa", "where did it erupt?", ("d0",), ("iceland",)))
    config = RerankerTrainConfig(negatives=9, mine_pool=2, mine="bm25")
    trainer = trainer_for(torch, tmp_path, config, TrainingSet(pairs, corpus))
    trainer.mine()
    assert all(len(v) <= 2 for v in trainer.negatives.values())  # too few: random ones fill up
    rng = random.Random(0)
    for pair in pairs:
        for _ in range(5):
            group = trainer.group((pair, pair.positives[0]), rng)
            assert group[0] == pair.positives[0] and len(set(group)) == len(group) == 10
            assert not set(group[1:]) & set(pair.positives)
            assert pair.query_id != "qa" or "x0" not in group
    too_many = trainer_for(torch, tmp_path, RerankerTrainConfig(negatives=12, mine="bm25"))
    with pytest.raises(BadInputError, match="could not find 12 negatives.*lower --negatives"):
        too_many.group((data.pairs[0], "d0"), rng)


@pytest.mark.parametrize("loss", ["bce", "listwise"])
def test_the_loss_falls_and_the_saved_model_ranks_positives_first(torch, tmp_path, loss):
    from ragmix.rerank.cross_encoder import TRAINING_REPORT, CrossEncoderScorer

    config = RerankerTrainConfig(loss=loss, negatives=3, steps=80, batch_size=6, chunk_size=6,
                                 lr=5e-3, warmup=0.0, max_length=32, mine="hybrid")
    trainer = trainer_for(torch, tmp_path, config)
    events = []
    report = trainer.train(tmp_path / "out", progress=lambda e, **i: events.append(e))
    losses = [s.loss for s in report.log]
    assert report.steps == 80 and report.mined > 0
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses
    assert events[:2] == ["stage", "start"] and events.count("step") == 80
    assert not (tmp_path / "out" / "checkpoints").exists()
    scorer = CrossEncoderScorer(tmp_path / "out", dtype="float32")
    data = toy_set()
    ids = list(data.corpus)
    near = [np.diff(scorer.score(p.query, [data.corpus[f"n{i}"], data.corpus[f"d{i}"]]))[0]
            for i, p in enumerate(data.pairs)]
    assert sum(d > 0 for d in near) >= 5  # the positive above its near miss
    top = [ids[int(np.argmax(scorer.score(p.query, [data.corpus[i] for i in ids])))]
           for p in data.pairs]
    assert sum(t == p.positives[0] for t, p in zip(top, data.pairs)) >= 4  # of all 12 passages
    saved = json.loads((tmp_path / "out" / TRAINING_REPORT).read_text())
    assert saved["config"]["loss"] == loss and len(saved["log"]) == 80


def test_resume_reproduces_an_uninterrupted_run(torch, tmp_path):
    # 6 pairs in batches of 4: steps 2 and 4 end an epoch, 3 is inside one
    config = RerankerTrainConfig(loss="listwise", negatives=2, steps=5, batch_size=4,
                                 chunk_size=3, lr=1e-3, max_length=32, mine="hybrid")
    straight = trainer_for(torch, tmp_path, config)
    uninterrupted = straight.train(tmp_path / "straight", checkpoint_every=1)

    class Crash(Exception):
        pass

    def crash(event, **info):
        if event == "step" and info["step"] == 3:
            raise Crash

    with pytest.raises(Crash):
        trainer_for(torch, tmp_path, config).train(tmp_path / "resumed", checkpoint_every=1,
                                                   progress=crash)
    resumed = trainer_for(torch, tmp_path, config)
    events = []
    report = resumed.train(tmp_path / "resumed", checkpoint_every=1,
                           progress=lambda event, **info: events.append((event, info)))
    assert report.resumed_from == 3 and report.steps == 5
    assert ("start", {"total": 5, "done": 3}) in events
    assert [s.loss for s in report.log] == [s.loss for s in uninterrupted.log]
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_checkpoint_from_other_settings_is_refused(torch, tmp_path):
    def crash(event, **info):
        if event == "step":
            raise KeyboardInterrupt

    config = RerankerTrainConfig(negatives=2, steps=2, batch_size=6, max_length=32, mine="bm25")
    with pytest.raises(KeyboardInterrupt):
        trainer_for(torch, tmp_path, config).train(tmp_path / "out", checkpoint_every=1,
                                                   progress=crash)
    other = RerankerTrainConfig(negatives=3, steps=2, batch_size=6, max_length=32, mine="bm25")
    with pytest.raises(BadInputError, match="other settings.*--no-resume"):
        trainer_for(torch, tmp_path, other).train(tmp_path / "out")


def test_config_rejects_bad_values():
    with pytest.raises(BadInputError, match="loss must be one of"):
        RerankerTrainConfig(loss="hinge")
    with pytest.raises(BadInputError, match="negatives must be >= 1"):
        RerankerTrainConfig(negatives=0)
    with pytest.raises(BadInputError, match="mine must be one of"):
        RerankerTrainConfig(mine="splade")


def write_beir(folder, data: TrainingSet):
    """``data`` as a BEIR folder with a train split."""
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as fh:
        for pid, text in data.corpus.items():
            fh.write(json.dumps({"_id": pid, "title": "", "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as fh:
        for pair in data.pairs:
            fh.write(json.dumps({"_id": pair.query_id, "text": pair.query}) + "\n")
    rows = [f"{p.query_id}\t{pid}\t1" for p in data.pairs for pid in p.positives]
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                                + "\n".join(rows) + "\n")
    return folder


def test_cli_trains_a_reranker_end_to_end(torch, tmp_path):
    from click.testing import CliRunner

    from ragmix.cli.main import cli
    from ragmix.rerank.cross_encoder import CrossEncoderScorer

    beir = write_beir(tmp_path / "beir", toy_set())
    *_, base = tiny_cross_encoder(torch, tmp_path / "base", words=VOCAB)
    args = ["train", "reranker", "--beir", str(beir), "--out", str(tmp_path / "out"),
            "--base", str(base), "--loss", "bce", "--negatives", "2", "--steps", "3",
            "--batch-size", "4", "--max-length", "32", "--mine-encoder", "hashing-64",
            "--dtype", "float32"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "trained 3 steps" in result.output and "--rerank-model" in result.output
    scores = CrossEncoderScorer(tmp_path / "out", dtype="float32").score("volcano", ["lava"])
    assert scores.shape == (1,)
    again = CliRunner().invoke(cli, [*args, "--no-resume"])
    assert again.exit_code == 0, again.output
    missing = CliRunner().invoke(cli, ["train", "reranker", "--out", str(tmp_path / "x")])
    assert missing.exit_code != 0 and "exactly one of --beir" in missing.output


@pytest.mark.models
def test_the_packaged_minilm_gets_a_new_head_and_trains(torch, tmp_path):
    from ragmix.rerank.cross_encoder import CrossEncoderScorer
    from ragmix.training.reranker import RerankerTrainer

    config = RerankerTrainConfig(negatives=1, steps=1, batch_size=2, max_length=32, mine="bm25")
    trainer = RerankerTrainer("minilm", toy_set(), config)
    assert type(trainer.model).__name__ == "BertForSequenceClassification"
    assert trainer.model.config.num_labels == 1
    trainer.train(tmp_path / "out")
    scores = CrossEncoderScorer(tmp_path / "out", dtype="float32").score("lava", ["volcano", "x"])
    assert np.isfinite(scores).all()


def test_mined_negatives_are_reused_only_when_what_they_were_mined_with_matches(torch, tmp_path):
    from ragmix.training.reranker import MINED_FILE

    config = RerankerTrainConfig(negatives=2, steps=1, batch_size=6, max_length=32, mine="hybrid")
    first = trainer_for(torch, tmp_path, config)
    first.mine_cached(tmp_path / "out")
    assert (tmp_path / "out" / MINED_FILE).is_file()
    stages = []
    again = trainer_for(torch, tmp_path, RerankerTrainConfig(
        loss="bce", negatives=2, steps=1, batch_size=6, max_length=32, mine="hybrid", lr=1e-4))
    again.mine = lambda progress=None: pytest.fail("a new loss and rate must not re-mine")
    again.mine_cached(tmp_path / "out", stages.append)
    assert again.negatives == first.negatives and "reusing" in stages[0]
    deeper = trainer_for(torch, tmp_path, RerankerTrainConfig(
        negatives=2, steps=1, batch_size=6, max_length=32, mine="hybrid", mine_depth=7))
    calls = []
    deeper.mine = lambda progress=None: calls.append(1) or 1.0
    deeper.mine_cached(tmp_path / "out")
    assert calls == [1]  # mined with other settings: mined again


def test_the_new_head_learns_at_head_lr_and_the_body_at_lr(torch, tmp_path):
    config = RerankerTrainConfig(negatives=2, steps=4, batch_size=6, max_length=32, mine="bm25",
                                 lr=2e-5, head_lr=5e-3)
    trainer = trainer_for(torch, tmp_path, config)
    named = dict(trainer.model.named_parameters())
    optimizer, _, params = trainer._optimizer(4)
    rates = {id(p): g["initial_lr"] for g in optimizer.param_groups for p in g["params"]}
    assert {rates[id(p)] for n, p in named.items() if n.startswith("classifier")} == {5e-3}
    assert {rates[id(p)] for n, p in named.items() if not n.startswith("classifier")} == {2e-5}
    assert len(params) == len(named)
    with pytest.raises(BadInputError, match="head_lr"):
        RerankerTrainConfig(head_lr=0)
