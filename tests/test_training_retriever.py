"""Retriever training: the InfoNCE loss, gradient caching, mined negatives, the trainer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragmix.errors import BadInputError
from ragmix.training.negatives import bm25_negatives, model_negatives
from ragmix.training.pairs import TrainingSet, TrainPair
from ragmix.training.retriever_config import RetrieverTrainConfig


def brute_info_nce(q, d, targets, temperature, excluded):
    total = 0.0
    for b in range(len(q)):
        scores = [float(q[b] @ d[n]) / temperature for n in range(len(d))
                  if n == targets[b] or not excluded[b][n]]
        top = float(q[b] @ d[targets[b]]) / temperature
        total += np.log(np.sum(np.exp(scores))) - top
    return total / len(q)


def test_info_nce_equals_brute_force_loop(torch):
    from ragmix.training.infonce import info_nce, pool_exclusions

    g = torch.Generator().manual_seed(1)
    q = torch.randn(4, 8, generator=g, dtype=torch.float64)
    d = torch.randn(10, 8, generator=g, dtype=torch.float64)
    targets = torch.tensor([0, 1, 2, 3])
    positives = [frozenset({"p0", "p5"}), frozenset({"p1"}), frozenset({"p2"}), frozenset({"p3"})]
    ids = [f"p{i}" for i in range(10)]
    excluded = pool_exclusions(positives, ids)
    assert excluded[0][5] and not excluded[1][5]
    got = info_nce(q, d, targets, temperature=2.0, excluded=torch.tensor(excluded))
    assert float(got) == pytest.approx(brute_info_nce(q.numpy(), d.numpy(), targets.tolist(),
                                                      2.0, excluded), rel=1e-9)
    # without exclusions the second positive of query 0 counts as a negative: a higher loss
    plain = info_nce(q, d, targets, temperature=2.0)
    assert float(plain) > float(got)


def test_info_nce_target_is_never_masked(torch):
    from ragmix.training.infonce import info_nce

    q, d = torch.eye(2), torch.eye(2)
    everything = torch.ones(2, 2, dtype=torch.bool)
    assert float(info_nce(q, d, torch.tensor([0, 1]), temperature=1.0, excluded=everything)) == 0


def _encoder(torch):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Dropout(0.2),
                               torch.nn.Linear(16, 4))


def test_grad_cache_equals_one_big_batch(torch):
    from ragmix.training.gradcache import cached_backward
    from ragmix.training.infonce import info_nce

    g = torch.Generator().manual_seed(3)
    queries, passages = torch.randn(12, 6, generator=g), torch.randn(20, 6, generator=g)
    targets = torch.arange(12)
    scale = torch.nn.Parameter(torch.tensor(3.0))

    def loss_fn(q, d):
        q = torch.nn.functional.normalize(q, dim=-1)
        d = torch.nn.functional.normalize(d, dim=-1)
        return info_nce(q, d, targets, temperature=1 / scale)

    def grads(model):
        return [p.grad.clone() for p in model.parameters()] + [scale.grad.clone()]

    enc = _encoder(torch).eval()  # no dropout: chunking cannot matter
    loss_fn(enc(queries), enc(passages)).backward()
    plain = grads(enc)
    enc.zero_grad(), scale.grad.zero_()
    loss = cached_backward([enc, enc], [queries, passages], loss_fn, chunk_size=5)
    cached = grads(enc)
    for a, b in zip(plain, cached):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        assert float(loss) == pytest.approx(float(loss_fn(enc(queries), enc(passages))), rel=1e-6)


def test_grad_cache_replays_dropout(torch):
    from ragmix.training.gradcache import cached_backward
    from ragmix.training.infonce import info_nce

    g = torch.Generator().manual_seed(4)
    queries, passages = torch.randn(6, 6, generator=g), torch.randn(6, 6, generator=g)
    targets = torch.arange(6)

    def loss_fn(q, d):
        return info_nce(q, d, targets, temperature=1.0)

    enc = _encoder(torch).train()
    torch.manual_seed(7)  # the reference: the same chunks, embedded with a graph
    q = torch.cat([enc(queries[:4]), enc(queries[4:])])
    d = torch.cat([enc(passages[:4]), enc(passages[4:])])
    loss_fn(q, d).backward()
    plain = [p.grad.clone() for p in enc.parameters()]
    after_reference = torch.get_rng_state()
    enc.zero_grad()
    torch.manual_seed(7)
    cached_backward([enc, enc], [queries, passages], loss_fn, chunk_size=4)
    for a, b in zip(plain, [p.grad for p in enc.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # the replays leave the generator where the first pass left it
    assert torch.equal(torch.get_rng_state(), after_reference)


def test_grad_cache_replays_the_cuda_generators_of_tensor_inputs(torch, monkeypatch):
    """On a GPU dropout draws from the device's generator: each chunk's state is saved and set
    again for its replay, as sentence-transformers' RandContext does (mocked: no GPU here)."""
    import torch.utils.checkpoint as checkpoint

    from ragmix.training.gradcache import cached_backward
    from ragmix.training.infonce import info_nce

    got, put, forked = [], [], []

    def get_device_states(*args):
        got.append(args)
        return [0], [torch.tensor([len(got)])]  # device 0, one state per chunk

    def set_device_states(devices, states, **_):
        put.append((list(devices), [int(s) for s in states]))

    real_fork = torch.random.fork_rng

    def fork_rng(devices=None, **kwargs):
        forked.append(list(devices))
        return real_fork(devices=[], **kwargs)  # the CPU generator; there is no device 0

    monkeypatch.setattr(checkpoint, "get_device_states", get_device_states)
    monkeypatch.setattr(checkpoint, "set_device_states", set_device_states)
    monkeypatch.setattr(torch.random, "fork_rng", fork_rng)
    g = torch.Generator().manual_seed(4)
    queries, passages = torch.randn(6, 6, generator=g), torch.randn(6, 6, generator=g)
    enc = _encoder(torch).train()
    cached_backward([enc, enc], [queries, passages],
                    lambda q, d: info_nce(q, d, torch.arange(6), temperature=1.0), chunk_size=4)
    chunks = [queries[:4], queries[4:], passages[:4], passages[4:]]
    assert len(got) == 4 and all(len(args) == 1 for args in got)
    for args, chunk in zip(got, chunks):
        torch.testing.assert_close(args[0], chunk, rtol=0, atol=0)
    assert put == [([0], [1]), ([0], [2]), ([0], [3]), ([0], [4])]  # each chunk its own state
    assert forked == [[0]] * 4


def test_grad_cache_replays_the_generators_of_the_devices_given_for_texts(torch, monkeypatch):
    """Texts carry no device: the encoders' devices are named, and their generators replayed."""
    import torch.utils.checkpoint as checkpoint

    from ragmix.training.gradcache import cached_backward
    from ragmix.training.infonce import info_nce

    saved, put = [], []

    def get_rng_state(device):
        saved.append(device)
        return torch.tensor([len(saved)])

    monkeypatch.setattr(torch.cuda, "get_rng_state", get_rng_state)
    monkeypatch.setattr(checkpoint, "set_device_states",
                        lambda devices, states, **_: put.append((list(devices),
                                                                 [int(s) for s in states])))
    real_fork = torch.random.fork_rng
    monkeypatch.setattr(torch.random, "fork_rng",
                        lambda devices=None, **kw: real_fork(devices=[], **kw))
    g = torch.Generator().manual_seed(4)
    features = {f"text {i}": row for i, row in enumerate(torch.randn(6, 6, generator=g))}
    texts = list(features)
    enc = _encoder(torch).train()

    def embed(chunk):  # (n, 4) from a list of texts
        return enc(torch.stack([features[t] for t in chunk]))

    def loss_fn(q, d):
        return info_nce(q, d, torch.arange(6), temperature=1.0)

    torch.manual_seed(7)  # the reference: the same chunks, embedded with a graph
    loss_fn(torch.cat([embed(texts[:4]), embed(texts[4:])]),
            torch.cat([embed(texts[:4]), embed(texts[4:])])).backward()
    plain = [p.grad.clone() for p in enc.parameters()]
    enc.zero_grad()
    torch.manual_seed(7)
    cached_backward([embed, embed], [texts, texts], loss_fn, chunk_size=4,
                    devices=[torch.device("cpu"), torch.device("cuda:1"), torch.device("cuda:1")])
    assert saved == [1] * 4  # once per chunk, the CPU and a repeated device skipped
    assert put == [([1], [1]), ([1], [2]), ([1], [3]), ([1], [4])]
    for a, b in zip(plain, [p.grad for p in enc.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _toy_set() -> TrainingSet:
    topics = ["volcano lava eruption", "piano music concert", "rocket orbit launch",
              "bread flour oven", "river delta flood", "chess opening gambit"]
    corpus, pairs = {}, []
    for i, topic in enumerate(topics):
        corpus[f"d{i}"] = f"{topic} {topic} facts and history about the {topic.split()[0]}"
        corpus[f"n{i}"] = f"{topic.split()[0]} trivia unrelated gossip"
        pairs.append(TrainPair(f"q{i}", f"tell me about {topic}", (f"d{i}",), ()))
    return TrainingSet(tuple(pairs), corpus)


def test_bm25_negatives_never_hold_a_positive_or_an_answer():
    data = _toy_set()
    corpus = {**data.corpus, "x0": "volcano lava Eruption in Iceland"}
    pairs = [*data.pairs, TrainPair("qa", "volcano lava", ("d0",), ("eruption",))]
    mined = bm25_negatives(pairs, corpus, count=5)
    for pair in pairs:
        assert mined[pair.query_id], pair
        assert not set(mined[pair.query_id]) & set(pair.positives)
    assert {"n0", "x0"} <= set(mined["q0"])  # they share "volcano" with the query
    assert "n0" in mined["qa"] and "x0" not in mined["qa"]  # x0 holds the answer


def test_model_negatives_drop_near_positive_scores():
    corpus = {"pos": "p", "twin": "t", "far": "f"}
    vectors = {"pos": [1.0, 0.0], "twin": [0.99, 0.14], "far": [0.0, 1.0], "q": [1.0, 0.0]}

    def embed(texts):
        return np.array([vectors[{"p": "pos", "t": "twin", "f": "far"}.get(t, "q")]
                         for t in texts], dtype=np.float32)

    pair = TrainPair("q", "query", ("pos",))
    kept = model_negatives([pair], corpus, embed, embed, count=5)["q"]
    assert kept == ("far",)  # "twin" scores 0.99 x the positive: a likely false negative
    loose = model_negatives([pair], corpus, embed, embed, count=5, max_ratio=1.5)["q"]
    assert loose == ("twin", "far")


def test_an_epoch_trains_every_query_positive_pair_once(torch):
    import random
    from types import SimpleNamespace

    from ragmix.training.retriever import RetrieverTrainer

    toy = _toy_set()
    pairs = (*toy.pairs[:-1], TrainPair("q5", toy.pairs[-1].query, ("d5", "n4")))  # 2 positives
    data = TrainingSet(pairs, toy.corpus)
    trainer = RetrieverTrainer("unused", data, RetrieverTrainConfig(batch_size=3, negatives=()),
                               model=SimpleNamespace(max_seq_length=0))
    batches = trainer.batches(random.Random(0))
    seen = [(pair.query_id, pid) for batch in batches for pair, pid in batch]
    assert sorted(seen) == sorted((p.query_id, pid) for p in pairs for pid in p.positives)
    assert [len(b) for b in batches] == [3, 3, 1]
    for batch in batches:
        ids, targets = trainer.pool(batch, random.Random(0))
        assert [ids[t] for t in targets] == [pid for _, pid in batch]


def test_config_rejects_bad_values():
    with pytest.raises(BadInputError, match="negatives must be among"):
        RetrieverTrainConfig(negatives=("cross-encoder",))
    with pytest.raises(BadInputError, match="batch_size must be > 0"):
        RetrieverTrainConfig(batch_size=0)


def test_training_scores_cosine_for_a_model_without_normalize(torch, tokenizer, tmp_path,
                                                             monkeypatch):
    """A base model that does not normalise is trained on the unit vectors the index searches."""
    import random

    from tiny_models import tiny_sentence_transformer

    from ragmix.training import pool_scoring, retriever
    from ragmix.training.infonce import info_nce

    model, _ = tiny_sentence_transformer(torch, tokenizer, tmp_path, normalize=False)
    data = _toy_set()
    config = RetrieverTrainConfig(batch_size=6, chunk_size=4, temperature=0.1, negatives=(),
                                  max_seq_length=32)
    trainer = retriever.RetrieverTrainer("unused", data, config, model=model)
    trainer._train_mode(False)  # no dropout, so the reference below sees the same vectors
    scored = []

    def spy(q, d, *args, **kwargs):
        scored.append((q.detach(), d.detach()))
        return info_nce(q, d, *args, **kwargs)

    monkeypatch.setattr(pool_scoring, "info_nce", spy)
    batch = [(pair, pair.positives[0]) for pair in data.pairs]
    pool_ids, targets = trainer.pool(batch, random.Random(0))
    loss = trainer.step_loss(batch, pool_ids, targets)
    (q, d), = scored
    torch.testing.assert_close(q.norm(dim=-1), torch.ones(len(q)))  # (B,)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(len(d)))  # (N,)
    with torch.no_grad():
        raw_q = model(model.preprocess([p.query for p, _ in batch]))["sentence_embedding"]
        raw_d = model(model.preprocess([data.corpus[i] for i in pool_ids]))["sentence_embedding"]
    assert raw_q.norm(dim=-1).min() > 2  # the model itself is far from unit norm
    cosine = info_nce(torch.nn.functional.normalize(raw_q, dim=-1),
                      torch.nn.functional.normalize(raw_d, dim=-1), torch.tensor(targets),
                      temperature=0.1)
    assert float(loss) == pytest.approx(float(cosine), rel=1e-5)


def test_a_model_without_normalize_indexes_the_vectors_it_was_trained_on(torch, tokenizer,
                                                                         tmp_path):
    from tiny_models import tiny_sentence_transformer

    from ragmix.encoders import load_encoder
    from ragmix.encoders.sentence_transformer import embed
    from ragmix.training.retriever import RetrieverTrainer

    model, _ = tiny_sentence_transformer(torch, tokenizer, tmp_path, normalize=False)
    data = _toy_set()
    config = RetrieverTrainConfig(epochs=1, batch_size=6, negatives=(), max_seq_length=32)
    trainer = RetrieverTrainer("unused", data, config, model=model)
    trainer.train(tmp_path / "out")
    texts = list(data.corpus.values())
    encoder = load_encoder(str(tmp_path / "out"))
    vectors = encoder.encode_documents(texts, batch_size=4)  # (n, D)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    with torch.no_grad():
        trained = embed(trainer.passage_model.eval(), texts).numpy()  # (n, D)
    np.testing.assert_allclose(vectors, trained, atol=1e-5)
    reference = encoder.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(vectors, reference, atol=1e-6)  # as sentence-transformers does


@pytest.mark.slow
@pytest.mark.parametrize("two_tower", [False, True])
def test_trainer_lowers_the_loss_and_saves_a_loadable_encoder(torch, tokenizer, tmp_path,
                                                              two_tower):
    from tiny_models import tiny_sentence_transformer

    from ragmix.encoders import load_encoder
    from ragmix.training.retriever import RetrieverTrainer

    data = _toy_set()
    model, _ = tiny_sentence_transformer(torch, tokenizer, tmp_path)
    config = RetrieverTrainConfig(epochs=12, batch_size=6, chunk_size=4, lr=3e-3, warmup=0.0,
                                  temperature=0.1, negatives=("bm25",), two_tower=two_tower,
                                  max_seq_length=32)
    trainer = RetrieverTrainer("unused", data, config, model=model)
    report = trainer.train(tmp_path / "out")
    losses = [s.loss for s in report.log]
    assert report.steps == 12  # 6 (query, positive) pairs in one batch, 12 epochs
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
    encoder = load_encoder(str(tmp_path / "out"))
    q = encoder.encode_queries([p.query for p in data.pairs])
    d = encoder.encode_documents([data.corpus[p.positives[0]] for p in data.pairs])
    assert (np.argmax(q @ d.T, axis=1) == np.arange(len(q))).mean() >= 5 / 6
    log = json.loads((tmp_path / "out" / "ragmix_training.json").read_text())
    assert log["config"]["two_tower"] is two_tower and len(log["log"]) == 12
    if two_tower:
        assert type(encoder).__name__ == "TwoTowerEncoder"


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", [2, 3])  # at an epoch's end, and inside one
def test_resume_reproduces_an_uninterrupted_run(torch, tokenizer, tmp_path, crash_at):
    from tiny_models import tiny_sentence_transformer

    from ragmix.training.retriever import RetrieverTrainer

    data = _toy_set()
    config = RetrieverTrainConfig(epochs=3, batch_size=3, chunk_size=2, lr=3e-3, warmup=0.0,
                                  temperature=0.1, negatives=("bm25", "model"),
                                  learn_temperature=True, max_seq_length=32)

    def trainer():  # a fresh process: the base model rebuilt from scratch
        model, _ = tiny_sentence_transformer(torch, tokenizer, tmp_path / "base")
        return RetrieverTrainer("unused", data, config, model=model)

    def weights(model):
        return [p.detach().clone() for p in model.parameters()]

    straight = trainer()
    uninterrupted = straight.train(tmp_path / "straight", checkpoint_every=1)
    assert uninterrupted.steps == 6 and uninterrupted.resumed_from == 0
    assert not (tmp_path / "straight" / "checkpoints").exists()  # deleted once saved

    class Crash(Exception):
        pass

    def crash(event, **info):
        if event == "step" and info["step"] == crash_at:
            raise Crash

    with pytest.raises(Crash):
        trainer().train(tmp_path / "resumed", checkpoint_every=1, progress=crash)
    resumed = trainer()
    events = []
    report = resumed.train(tmp_path / "resumed", checkpoint_every=1,
                           progress=lambda event, **info: events.append((event, info)))
    assert report.resumed_from == crash_at and report.steps == 6
    assert ("start", {"total": 6, "done": crash_at}) in events
    for a, b in zip(weights(straight.passage_model), weights(resumed.passage_model)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert resumed.temperature == straight.temperature
    assert [s.loss for s in report.log] == [s.loss for s in uninterrupted.log]


@pytest.mark.slow
def test_resume_refuses_other_settings(torch, tokenizer, tmp_path):
    from tiny_models import tiny_sentence_transformer

    from ragmix.training.retriever import RetrieverTrainer

    data = _toy_set()
    model, _ = tiny_sentence_transformer(torch, tokenizer, tmp_path / "base")
    config = RetrieverTrainConfig(epochs=2, batch_size=3, negatives=(), max_seq_length=32)

    def stop(event, **info):
        if event == "step":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        RetrieverTrainer("unused", data, config, model=model).train(tmp_path / "out",
                                                                    checkpoint_every=1,
                                                                    progress=stop)
    other = RetrieverTrainConfig(epochs=2, batch_size=3, negatives=(), max_seq_length=32, lr=1e-3)
    model, _ = tiny_sentence_transformer(torch, tokenizer, tmp_path / "base")
    with pytest.raises(BadInputError, match="other settings"):
        RetrieverTrainer("unused", data, other, model=model).train(tmp_path / "out")
    report = RetrieverTrainer("unused", data, other, model=model).train(tmp_path / "out",
                                                                        resume=False)
    assert report.resumed_from == 0 and report.steps == 4


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


@pytest.mark.slow
def test_cli_trains_from_beir_and_the_model_indexes(torch, tokenizer, tmp_path):
    from click.testing import CliRunner
    from tiny_models import tiny_sentence_transformer

    from ragmix.cli.main import cli
    from ragmix.store import Collection

    _write_beir(tmp_path / "beir", _toy_set())
    _, base = tiny_sentence_transformer(torch, tokenizer, tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, [
        "train", "retriever", "--beir", str(tmp_path / "beir"), "--base", str(base),
        "--out", str(tmp_path / "model"), "--batch-size", "3", "--epochs", "2",
        "--negatives", "bm25", "--max-seq-length", "32"])
    assert result.exit_code == 0, result.output
    assert "trained 4 steps" in result.output
    with Collection.create(tmp_path / "col", encoder=str(tmp_path / "model")) as col:
        col.add([tmp_path / "beir" / "corpus.jsonl"])
        assert col.manifest.encoder == str((tmp_path / "model").resolve())
        assert col.search("volcano lava", k=1, mode="dense")
    bad = runner.invoke(cli, ["train", "retriever", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "exactly one of --beir" in bad.output
    bad = runner.invoke(cli, ["train", "retriever", "--beir", str(tmp_path / "beir"),
                              "--out", str(tmp_path / "x"), "--negatives", "colbert"])
    assert bad.exit_code != 0 and "'colbert'" in bad.output
