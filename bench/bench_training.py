"""Does training move the numbers? Retriever training on SciFact, joint RAG training on SQuAD.

    .venv/bin/python bench/bench_training.py retriever [--configs bm25] [--epochs 3]
    .venv/bin/python bench/bench_training.py rag [--steps 300] [--k 3] [--top-layers 10] [--lr 1e-3]

``retriever``: fine-tunes the packaged all-MiniLM-L6-v2 on SciFact's train
qrels with InfoNCE, once per negative configuration:

- ``inbatch``: in-batch negatives only;
- ``bm25``: + one BM25 hard negative per query (mined with ragmix's BM25);
- ``model``: + one negative mined by the starting model (false-negative filter);
- ``bm25+model``: both.

A seeded tenth of the 809 train queries is held out (``--dev-fraction``) to
choose settings on; the test queries are never used for that. An epoch trains
every (query, positive) pair of the rest once. Each model is saved under
bench/.work/models/, the SciFact corpus is indexed with it
(bench/.work/retrieval-LABEL/, documents cut only past 512 words as in the
untrained baseline) and the dev and 300 test queries are scored, dense and hybrid
(weighted fusion, the default). Results merge into bench/results/training.json
under "scifact_retriever", beside the untrained figures from
bench/results/retrieval_scifact.json. A rerun reuses a finished model of the
same settings, resumes a crashed training from its last checkpoint (every 10
steps) and resumes its index, so a crash costs little.

``rag``: the paper's joint fine-tuning of SmolLM2 (LoRA) and the MiniLM query
encoder on ``steps x batch`` seeded SQuAD v1.1 train questions, retrieving from
the frozen SQuAD-open index that bench/bench_retrieval.py --dataset squad
builds. Then the 300 dev questions of bench/bench_qa.py --limit 300 (same
seed) are answered with k=5, hybrid retrieval, in the trained mode; dense
answer recall@5 is measured before and after (the query encoder learns only
from the generator's loss). Results go under "squad_rag", beside the frozen
baselines of bench/results/qa_squad.json. ``--eval-on heldout`` answers
instead SQuAD train questions the run did not train on (key suffix
``-heldout``), to choose settings without looking at dev; the trained model
is reused, so a run can be scored on both.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
import json
import time

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from _common import DATA, RESULTS, ROOT, require_data, write_result  # noqa: E402

from ragmix.dtypes import DTYPES  # noqa: E402
from ragmix.encoders import canonical_name  # noqa: E402

CONFIGS = {"inbatch": (), "bm25": ("bm25",), "model": ("model",),
           "bm25+model": ("bm25", "model")}
KEYS = ("ndcg@10", "recall@100", "mrr@10")


def retriever(args: argparse.Namespace) -> None:
    import random
    import shutil

    from ragmix.evaluation.datasets import load_beir
    from ragmix.evaluation.run_retrieval import index_corpus
    from ragmix.training.pairs import TrainingSet, load_beir_pairs
    from ragmix.training.retriever import TRAINING_LOG, RetrieverTrainer
    from ragmix.training.retriever_config import RetrieverTrainConfig

    folder = require_data(args.data)
    full = load_beir_pairs(folder, "train")
    train_split = load_beir(folder, "train")
    # Held-out train queries: settings are chosen on these, never on the test queries.
    ids = sorted(p.query_id for p in full.pairs)
    dev_ids = set(random.Random(args.seed).sample(ids, round(args.dev_fraction * len(ids))))
    data = TrainingSet(tuple(p for p in full.pairs if p.query_id not in dev_ids), full.corpus)
    dev_queries = {q: t for q, t in train_split.queries.items() if q in dev_ids}
    dev_qrels = {q: judged for q, judged in train_split.qrels.items() if q in dev_ids}
    test = load_beir(folder, "test")
    path = RESULTS / "training.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    rows = results.setdefault("scifact_retriever", {})
    untrained = RESULTS / "retrieval_scifact.json"
    if untrained.exists():
        base = json.loads(untrained.read_text())  # bench_retrieval.py's test figures
        for m in ("dense", "hybrid", "bm25"):
            rows.setdefault("untrained", {}).setdefault(m, {k: base[m][k] for k in KEYS})
    for name in args.configs.split(","):
        if name not in CONFIGS and name != "untrained":
            raise SystemExit(f"unknown config {name!r}; "
                             f"choose from untrained, {', '.join(CONFIGS)}")
        if name == "untrained":
            # the starting model, scored on the same dev and test queries (dev is the
            # baseline settings are chosen against); reuses bench_retrieval.py's index
            work = ROOT / "bench" / ".work" / f"retrieval-scifact-{canonical_name('minilm')}"
            col, _ = index_corpus(work, test.corpus, encoder="minilm")
            _score(col, rows.setdefault("untrained", {}), dev_queries, dev_qrels, test,
                   ("dense", "hybrid", "bm25"))
            write_result("training.json", results)
            continue
        config = RetrieverTrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, chunk_size=args.chunk_size,
            lr=args.lr, temperature=args.temperature, negatives=CONFIGS[name], seed=args.seed,
            dtype=args.dtype)
        label = (f"scifact-{name}-e{args.epochs}-lr{args.lr:g}-b{args.batch_size}"
                 f"-t{args.temperature:g}-dev{args.dev_fraction:g}-s{args.seed}"
                 + ("" if config.dtype == "float32" else f"-{config.dtype}"))
        out = ROOT / "bench" / ".work" / "models" / label
        work = ROOT / "bench" / ".work" / f"retrieval-{label}"
        trained = out / TRAINING_LOG
        if trained.exists() and json.loads(trained.read_text())["config"] == asdict(config):
            print(f"== {name}: reusing {out}", flush=True)  # a rerun after a crash
            log = json.loads(trained.read_text())
            train_s, steps, mined = log["seconds"], log["steps"], log["mined_per_query"]
            losses = [log["log"][0]["loss"], log["log"][-1]["loss"]]
        else:
            shutil.rmtree(work, ignore_errors=True)  # never score against another model's index
            print(f"== {name}: training {len(data.pairs)} queries -> {out}", flush=True)
            report = RetrieverTrainer("minilm", data, config).train(
                out, progress=lambda event, **info: print(
                    f"  step {info['step']} loss {info['loss']:.4f}", flush=True)
                if event == "step" and info["step"] % 5 == 0 else None)
            train_s, steps, mined = report.seconds, report.steps, report.mined
            losses = [report.log[0].loss, report.log[-1].loss]
        began = time.perf_counter()
        col, _ = index_corpus(work, test.corpus, encoder=str(out))  # resumes a partial index
        index_s = time.perf_counter() - began
        row: dict[str, object] = {"negatives": list(CONFIGS[name]), "epochs": args.epochs,
                                  "batch_size": args.batch_size, "lr": args.lr,
                                  "temperature": args.temperature, "steps": steps,
                                  "dtype": config.dtype,
                                  "train_queries": len(data.pairs), "dev_queries": len(dev_ids),
                                  "train_s": round(train_s, 1), "index_s": round(index_s, 1),
                                  "mined_per_query": mined,
                                  "loss_first_last": [round(x, 4) for x in losses]}
        _score(col, row, dev_queries, dev_qrels, test)
        rows[label] = row
        write_result("training.json", results)  # after every config: nothing lost
    print(f"wrote {path}")


def _score(col, row: dict, dev_queries: dict, dev_qrels: dict, test,
           modes: tuple[str, ...] = ("dense", "hybrid")) -> None:
    """Score the dev and test queries, dense and hybrid, into ``row``; closes ``col``."""
    from ragmix.evaluation.run_retrieval import evaluate_retrieval

    with col:
        for split, queries, qrels in (("dev", dev_queries, dev_qrels),
                                      ("test", test.queries, test.qrels)):
            if not queries:
                continue
            for mode in modes:
                metrics = evaluate_retrieval(col.searcher(), queries, qrels, mode=mode).metrics
                key = mode if split == "test" else f"{split}_{mode}"
                row[key] = {k: round(metrics[k], 4) for k in KEYS}
                print(f"  {key:<12}" + "".join(f"  {k} {row[key][k]:.4f}" for k in KEYS),
                      flush=True)


def rag(args: argparse.Namespace) -> None:
    import random

    from ragmix.evaluation.datasets import load_qa
    from ragmix.evaluation.run_qa import evaluate_qa, sample_questions
    from ragmix.evaluation.run_retrieval import index_corpus
    from ragmix.generation import load_generator
    from ragmix.training.pairs import load_qa_pairs
    from ragmix.training.rag import RagTrainer
    from ragmix.training.rag_config import RagTrainConfig

    folder = require_data(args.data)
    config = RagTrainConfig(mode=args.mode, k=args.k, steps=args.steps,
                            batch_size=args.batch_size, lr=args.lr, top_layers=args.top_layers,
                            passage_words=args.passage_words, seed=args.seed,
                            checkpoint_every=25)
    pool = load_qa_pairs(folder / "train-v1.1.json.gz")
    examples = random.Random(args.seed).sample(pool, config.steps * config.batch_size)
    if args.eval_on == "dev":  # the issue-4 bench's questions: the reported figures
        dev = sample_questions(load_qa(folder / "dev-questions.jsonl"), args.eval_questions, 0)
    else:  # train questions this run never saw: for choosing settings without touching dev
        seen = {ex.id for ex in examples}
        dev = sample_questions([ex for ex in pool if ex.id not in seen], args.eval_questions, 1)
    name = (f"squad-{args.mode}-k{args.k}-s{args.steps}x{args.batch_size}"
            f"-top{args.top_layers or 'all'}-w{args.passage_words}-lr{args.lr:g}")
    journal = "eval-journal.jsonl" if args.eval_on == "dev" else "eval-heldout-journal.jsonl"
    out = ROOT / "bench" / ".work" / "runs" / name
    work = ROOT / "bench" / ".work" / f"retrieval-squad-{canonical_name('minilm')}"
    col, _ = index_corpus(work, folder / "paragraphs.jsonl", encoder="minilm")
    row: dict[str, object] = {}
    with col:
        before = evaluate_qa(col.searcher(), None, dev, mode="dense", k=5).metrics
        print(f"== {name}: {len(examples)} train questions -> {out}", flush=True)
        trainer = RagTrainer(col, load_generator("smollm2"), examples, config)
        report = trainer.train(out, progress=lambda event, **info: print(
            f"  step {info['step']} loss {info['loss']:.3f} H {info['stats'].entropy:.2f} "
            f"AR@k {info['stats'].answer_recall:.2f} moved {info['stats'].top1_changed:.2f}",
            flush=True) if event == "step" and info["step"] % 5 == 0 else None)
        from ragmix.encoders.sentence_transformer import SentenceTransformerEncoder

        col.use_query_encoder(SentenceTransformerEncoder(out / "query_encoder"))
        after = evaluate_qa(col.searcher(), None, dev, mode="dense", k=5).metrics
        generator = load_generator(str(out / "generator"))
        qa = evaluate_qa(col.searcher(), generator, dev, mode="hybrid", k=5,
                         generation=args.mode, decoding=args.decoding, beams=args.beams,
                         journal=out / journal).metrics  # a rerun resumes
        last = report.log[-1]
        row = {"config": asdict(config), "train_questions":
               len(examples), "train_s": round(report.seconds, 1),  # over resumes too
               "s_per_step": round(report.seconds / max(1, report.steps), 2),
               "loss_first_last_window": [_mean_loss(report.log[:10]),
                                          _mean_loss(report.log[-10:])],
               "final_window": {"entropy": round(last.entropy, 3),
                                "top1_changed": round(last.top1_changed, 3),
                                "answer_recall": round(last.answer_recall, 3)},
               "warnings": list(report.warnings),
               "dense_answer_recall@5": {"before": round(before["answer_recall@5"], 4),
                                         "after": round(after["answer_recall@5"], 4)},
               "eval": {"on": args.eval_on, "questions": len(dev), "retrieval": "hybrid", "k": 5,
                        "decoding": args.decoding if args.mode == "rag-sequence" else "greedy",
                        "beams": args.beams,
                        **{k: round(qa[k], 4) for k in ("em", "f1", "answer_recall@5",
                                                        "s_per_question")}}}
        print(json.dumps(row, indent=1), flush=True)
    path = RESULTS / "training.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    key = name if args.eval_on == "dev" else f"{name}-heldout"
    results.setdefault("squad_rag", {})[key] = row
    write_result("training.json", results)
    print(f"wrote {path}")


def _mean_loss(rows) -> float:
    """The mean training loss over a few logged steps (up to the first or last ten)."""
    return round(sum(r.loss for r in rows) / max(1, len(rows)), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("retriever", help="SciFact retriever training, per negative type")
    r.add_argument("--data", type=__import__("pathlib").Path, default=DATA / "scifact")
    r.add_argument("--configs", default="bm25",
                   help=f"comma list of untrained, {', '.join(CONFIGS)}")
    r.add_argument("--epochs", type=int, default=3)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--chunk-size", type=int, default=32)
    r.add_argument("--lr", type=float, default=3e-5)
    r.add_argument("--dev-fraction", type=float, default=0.1,
                   help="train queries held out to choose settings on (never the test ones)")
    r.add_argument("--temperature", type=float, default=0.05)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--dtype", default="float32", choices=DTYPES,
                   help="training forward passes: float32, bfloat16 or auto (bf16 where the "
                        "CPU has AMX); a label ends -bfloat16 when not float32. Indexing "
                        "and scoring stay float32")
    g = sub.add_parser("rag", help="SQuAD joint fine-tuning of SmolLM2 + the query encoder")
    g.add_argument("--data", type=__import__("pathlib").Path, default=DATA / "squad-open")
    g.add_argument("--mode", choices=("rag-sequence", "rag-token"), default="rag-sequence")
    g.add_argument("--steps", type=int, default=300)
    g.add_argument("--batch-size", type=int, default=4)
    g.add_argument("--k", type=int, default=3, help="passages per question in training")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--top-layers", type=int, default=10)
    g.add_argument("--passage-words", type=int, default=128)
    g.add_argument("--eval-questions", type=int, default=300)
    g.add_argument("--eval-on", choices=("dev", "heldout"), default="dev",
                   help="dev: SQuAD-open dev (the reported figures); heldout: SQuAD train "
                        "questions the run did not train on (to choose settings)")
    g.add_argument("--decoding", choices=("thorough", "fast"), default="fast")
    g.add_argument("--beams", type=int, default=2)
    g.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "retriever":
        retriever(args)
    else:
        rag(args)


if __name__ == "__main__":
    main()
