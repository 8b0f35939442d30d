"""Does training move the numbers? Retriever training on SciFact (and, later, joint RAG on SQuAD).

    .venv/bin/python bench/bench_training.py retriever [--configs bm25] [--epochs 1]

``retriever``: fine-tunes the packaged all-MiniLM-L6-v2 on SciFact's train
qrels (809 queries) with InfoNCE, once per negative configuration:

- ``inbatch``: in-batch negatives only;
- ``bm25``: + one BM25 hard negative per query (mined with ragmix's BM25);
- ``model``: + one negative mined by the starting model (false-negative filter);
- ``bm25+model``: both.

Each model is saved under bench/.work/models/, the SciFact corpus is indexed
with it (bench/.work/retrieval-scifact-MODEL/) and the 300 test queries are
scored, dense and hybrid (weighted fusion, the default). Results merge into
bench/results/training.json under "scifact_retriever", beside the untrained
figures from bench/results/retrieval_scifact.json.
"""

from __future__ import annotations

import argparse
import json
import time

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from _common import DATA, RESULTS, ROOT, require_data, write_result  # noqa: E402

CONFIGS = {"inbatch": (), "bm25": ("bm25",), "model": ("model",),
           "bm25+model": ("bm25", "model")}
KEYS = ("ndcg@10", "recall@100", "mrr@10")


def retriever(args: argparse.Namespace) -> None:
    from ragmix.evaluation.datasets import load_beir
    from ragmix.evaluation.run_retrieval import evaluate_retrieval, index_corpus
    from ragmix.training.pairs import load_beir_pairs
    from ragmix.training.retriever import RetrieverTrainer
    from ragmix.training.retriever_config import RetrieverTrainConfig

    folder = require_data(args.data)
    data = load_beir_pairs(folder, "train")
    test = load_beir(folder, "test")
    path = RESULTS / "training.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    rows = results.setdefault("scifact_retriever", {})
    untrained = RESULTS / "retrieval_scifact.json"
    if untrained.exists():
        base = json.loads(untrained.read_text())
        rows["untrained"] = {m: {k: base[m][k] for k in KEYS} for m in ("dense", "hybrid", "bm25")}
    for name in args.configs.split(","):
        config = RetrieverTrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, chunk_size=args.chunk_size,
            lr=args.lr, temperature=args.temperature, negatives=CONFIGS[name], seed=args.seed)
        out = ROOT / "bench" / ".work" / "models" / f"scifact-{name}-e{args.epochs}"
        began = time.perf_counter()
        print(f"== {name}: training {len(data.pairs)} queries -> {out}", flush=True)
        report = RetrieverTrainer("minilm", data, config).train(
            out, progress=lambda event, **info: print(
                f"  step {info['step']} loss {info['loss']:.4f}", flush=True)
            if event == "step" and info["step"] % 5 == 0 else None)
        train_s = time.perf_counter() - began
        work = ROOT / "bench" / ".work" / f"retrieval-scifact-{out.name}"
        began = time.perf_counter()
        col, _ = index_corpus(work, test.corpus, encoder=str(out))
        index_s = time.perf_counter() - began
        row: dict[str, object] = {"negatives": list(CONFIGS[name]), "epochs": args.epochs,
                                  "batch_size": args.batch_size, "lr": args.lr,
                                  "temperature": args.temperature, "steps": report.steps,
                                  "train_s": round(train_s, 1), "index_s": round(index_s, 1),
                                  "mined_per_query": report.mined,
                                  "loss_first_last": [round(report.log[0].loss, 4),
                                                      round(report.log[-1].loss, 4)]}
        with col:
            for mode in ("dense", "hybrid"):
                metrics = evaluate_retrieval(col.searcher(), test.queries, test.qrels,
                                             mode=mode).metrics
                row[mode] = {k: round(metrics[k], 4) for k in KEYS}
                print(f"  {mode:<7}" + "".join(f"  {k} {row[mode][k]:.4f}" for k in KEYS),
                      flush=True)
        rows[name] = row
        write_result("training.json", results)  # after every config: nothing lost
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("retriever", help="SciFact retriever training, per negative type")
    r.add_argument("--data", type=__import__("pathlib").Path, default=DATA / "scifact")
    r.add_argument("--configs", default="bm25", help=f"comma list of {', '.join(CONFIGS)}")
    r.add_argument("--epochs", type=int, default=1)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--chunk-size", type=int, default=32)
    r.add_argument("--lr", type=float, default=2e-5)
    r.add_argument("--temperature", type=float, default=0.05)
    r.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "retriever":
        retriever(args)


if __name__ == "__main__":
    main()
