"""Joint RAG fine-tuning on tiny random models: gradients, learning, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragmix.errors import BadInputError
from ragmix.evaluation.datasets import QAExample
from ragmix.training.rag_config import RagTrainConfig

TOPICS = ["volcano lava eruption", "piano music concert", "rocket orbit launch",
          "bread flour oven", "river delta flood", "chess opening gambit"]


def _examples() -> list[QAExample]:
    return [QAExample(f"q{i}", f"what about {t.split()[0]}?", (t.split()[1],))
            for i, t in enumerate(TOPICS)]


@pytest.fixture
def setup(torch, tokenizer, tmp_path):
    from tiny_models import tiny_llama, tiny_sentence_transformer

    from ragmix.encoders import load_encoder
    from ragmix.generation.hf import HFGenerator
    from ragmix.store import Collection

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, topic in enumerate(TOPICS):
        (corpus / f"doc{i}.txt").write_text(f"{topic} facts: the {topic.split()[0]} and its "
                                            f"{topic.split()[1]}.")
    _, st_path = tiny_sentence_transformer(torch, tokenizer, tmp_path)
    col = Collection.create(tmp_path / "col", encoder=load_encoder(str(st_path)))
    col.add([corpus])

    def fresh():
        import copy

        gen = HFGenerator(tiny_llama(torch, tokenizer), tokenizer,
                          name="tiny-llama")
        query = copy.deepcopy(load_encoder(str(st_path)).model)
        return gen, query

    yield col, fresh
    col.close()


def _config(**overrides) -> RagTrainConfig:
    settings = dict(k=3, steps=4, batch_size=3, lr=1e-2, query_lr=1e-3, warmup=0.0,
                    checkpoint_every=2, passage_words=32, tau=0.1)
    return RagTrainConfig(**{**settings, **overrides})


@pytest.mark.parametrize("mode", ["rag-sequence", "rag-token"])
def test_gradients_reach_generator_and_query_encoder_not_documents(setup, torch, mode):
    from ragmix.training.rag import RagTrainer

    col, fresh = setup
    gen, query = fresh()
    trainer = RagTrainer(col, gen, _examples(), _config(mode=mode), query_model=query)
    before = col.store.embeddings(col.store.chunk_ids(), col.manifest.dim).copy()
    loss = trainer.loss(_examples()[:3])
    assert loss.requires_grad and float(loss.detach()) > 0
    loss.backward()
    lora = [(n, p) for n, p in gen.model.named_parameters() if "lora_" in n]
    assert lora and any(p.grad is not None and p.grad.abs().sum() > 0 for _, p in lora)
    frozen = [p for n, p in gen.model.named_parameters() if "lora_" not in n]
    assert all(not p.requires_grad and p.grad is None for p in frozen)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in query.parameters())
    np.testing.assert_array_equal(before, col.store.embeddings(col.store.chunk_ids(),
                                                               col.manifest.dim))


def test_the_prior_is_cosine_for_a_query_model_without_normalize(setup, torch, tokenizer,
                                                               tmp_path):
    """The same weights without a Normalize module give the same p(z|x): queries are normalised
    as the index's passages are."""
    from tiny_models import tiny_sentence_transformer

    from ragmix.training.rag import RagTrainer

    col, fresh = setup
    questions = [ex.question for ex in _examples()]
    plain, _ = tiny_sentence_transformer(torch, tokenizer, tmp_path / "plain", normalize=False)
    priors = []
    for query in (fresh()[1], plain):
        trainer = RagTrainer(col, fresh()[0], _examples(), _config(), query_model=query.eval())
        ids, prior = trainer.retrieve(questions)
        priors.append((ids, prior.detach()))
    with torch.no_grad():
        raw = plain(plain.preprocess(questions))["sentence_embedding"]  # (B, D)
    assert raw.norm(dim=-1).min() > 2  # the plain model does not normalise
    np.testing.assert_array_equal(priors[0][0], priors[1][0])
    torch.testing.assert_close(priors[0][1], priors[1][1], rtol=1e-5, atol=1e-5)


def test_a_frozen_query_encoder_gets_no_gradient(setup):
    from ragmix.training.rag import RagTrainer

    col, fresh = setup
    gen, query = fresh()
    trainer = RagTrainer(col, gen, _examples(), _config(train_query_encoder=False),
                         query_model=query)
    trainer.loss(_examples()[:3]).backward()
    assert all(p.grad is None for p in query.parameters())


@pytest.mark.slow
def test_the_loss_falls_and_the_run_is_saved(setup, torch, tmp_path):
    from ragmix.encoders import load_encoder
    from ragmix.generation import load_generator
    from ragmix.training.rag import RagTrainer

    col, fresh = setup
    gen, query = fresh()
    trainer = RagTrainer(col, gen, _examples(), _config(steps=16, checkpoint_every=8),
                         query_model=query)
    with torch.no_grad():
        start = float(trainer.loss(_examples()))
    report = trainer.train(tmp_path / "run")
    with torch.no_grad():
        end = float(trainer.loss(_examples()))
    assert end < 0.5 * start
    assert report.steps == 16 and len(report.log) == 16
    run = json.loads((tmp_path / "run" / "ragmix_rag.json").read_text())
    assert run["steps"] == 16 and {"entropy", "answer_recall", "top1_changed"} <= set(run["log"][0])
    merged = load_generator(str(tmp_path / "run" / "generator"))  # LoRA merged, plain model
    assert not any("lora_" in n for n, _ in merged.model.named_parameters())
    answer = _examples()[0].answers[0]
    prompt = trainer.gen.encode_prompt("anything")
    ids = trainer._answer_ids(answer)
    with torch.no_grad():
        live = trainer.gen.score_ids([prompt], [ids]).token_lp
        saved = merged.score_ids([prompt], [ids]).token_lp
    torch.testing.assert_close(live, saved, rtol=1e-4, atol=1e-4)
    assert load_encoder(str(tmp_path / "run" / "query_encoder")).dim == col.manifest.dim


@pytest.mark.slow
def test_resume_reproduces_an_uninterrupted_run(setup, torch, tmp_path):
    from ragmix.training.rag import RagTrainer

    col, fresh = setup
    gen, query = fresh()
    RagTrainer(col, gen, _examples(), _config(), query_model=query).train(tmp_path / "straight")
    straight = [p.detach().clone() for p in [*gen.model.parameters(), *query.parameters()]]

    class Crash(Exception):
        pass

    def crash_after_two(event, **info):
        if event == "step" and info["step"] == 2:
            raise Crash

    gen, query = fresh()
    with pytest.raises(Crash):
        RagTrainer(col, gen, _examples(), _config(), query_model=query).train(
            tmp_path / "resumed", progress=crash_after_two)
    gen, query = fresh()  # a new process: everything rebuilt, then resumed from step 2
    # checkpointing more often changes no result, so it does not block the resume
    report = RagTrainer(col, gen, _examples(), _config(checkpoint_every=1),
                        query_model=query).train(tmp_path / "resumed")
    assert report.resumed_from == 2 and report.steps == 4
    resumed = [p.detach() for p in [*gen.model.parameters(), *query.parameters()]]
    for a, b in zip(straight, resumed):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(BadInputError, match="other settings"):
        gen, query = fresh()
        RagTrainer(col, gen, _examples(), _config(lr=5e-3), query_model=query).train(
            tmp_path / "resumed")


def test_config_is_validated():
    with pytest.raises(BadInputError, match="mode must be one of"):
        RagTrainConfig(mode="stuff")
    with pytest.raises(BadInputError, match="k must be > 0"):
        RagTrainConfig(k=0)


@pytest.mark.slow
def test_cli_trains_resumes_and_asks_with_the_trained_models(setup, torch, tokenizer, tmp_path):
    from click.testing import CliRunner
    from tiny_models import tiny_llama

    from ragmix.cli.main import cli

    col, _ = setup
    tiny_llama(torch, tokenizer).save_pretrained(tmp_path / "gen")
    tokenizer.save_pretrained(tmp_path / "gen")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"question": ex.question, "answers": list(ex.answers)})
                             + "\n" for ex in _examples()))
    args = ["train", "rag", "--pairs", str(pairs), "-c", str(col.directory), "--out",
            str(tmp_path / "run"), "--generator", str(tmp_path / "gen"), "-k", "2",
            "--batch-size", "2", "--checkpoint-every", "2", "--passage-words", "16"]
    runner = CliRunner()
    first = runner.invoke(cli, [*args, "--steps", "2"])
    assert first.exit_code == 0, first.output
    more = runner.invoke(cli, [*args, "--steps", "2", "--lr", "5e-3"])  # not the default
    assert more.exit_code != 0 and "other settings" in more.output
    run = json.loads((tmp_path / "run" / "ragmix_rag.json").read_text())
    assert run["steps"] == 2 and run["config"]["k"] == 2
    answer = runner.invoke(cli, [
        "ask", "what about piano?", "-c", str(col.directory), "--mode", "rag-token", "-k", "2",
        "-r", "dense", "--generator", str(tmp_path / "run" / "generator"), "--query-encoder",
        str(tmp_path / "run" / "query_encoder"), "--max-new-tokens", "3", "--json"])
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.output[answer.output.index("{"):])["mode"] == "rag-token"


@pytest.mark.parametrize("lora", [True, False])
def test_top_layers_limits_what_trains(setup, lora):
    from ragmix.training.rag import RagTrainer

    col, fresh = setup
    gen, query = fresh()
    trainer = RagTrainer(col, gen, _examples(), _config(top_layers=1, lora=lora),
                         query_model=query)
    trainer.loss(_examples()[:3]).backward()
    trained = {n for n, p in gen.model.named_parameters() if p.requires_grad}
    assert trained and all(".layers.1." in n or n.endswith("model.norm.weight") for n in trained)
    assert all(p.grad is not None for n, p in gen.model.named_parameters() if n in trained)
    assert not any(".layers.0." in n for n in trained)


def test_collapse_monitor_warns_only_on_collapse():
    from ragmix.training.collapse import CollapseMonitor

    healthy = CollapseMonitor(window=5)
    for step in range(40):  # repeated questions and shared passages are normal
        for b in range(4):
            q = (step * 4 + b) % 12
            healthy.add(q, [0.6, 0.4], top1=q // 2, initial_top1=q // 2, has_answer=True)
        healthy.end_step()
    assert healthy.stats().warning is None and healthy.stats().answer_recall == 1.0
    collapsed = CollapseMonitor(window=5)
    for step in range(40):
        for b in range(4):
            q = (step * 4 + b) % 12
            late = step >= 20
            collapsed.add(q, [1.0, 0.0], top1=0 if late else q, initial_top1=q,
                          has_answer=not late)
        collapsed.end_step()
    stats = collapsed.stats()
    assert stats.warning and "collapsing" in stats.warning
    assert stats.top1_changed > 0.8 and stats.entropy == 0.0


def test_checkpoints_keep_two_and_skip_a_torn_one(torch, tmp_path):
    from ragmix.training.checkpoint import load_latest, save_checkpoint

    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"w": torch.full((2,), float(step))})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-2", "step-3"]
    (tmp_path / "step-3" / "state.pt").write_bytes(b"torn")
    state = load_latest(tmp_path)
    assert state["step"] == 2 and float(state["w"][0]) == 2.0
