"""Retrieval quality on SciFact (BEIR test) and SQuAD-open (dev), every mode, beside published figures.

    .venv/bin/python bench/bench_retrieval.py [--dataset scifact|squad] [--encoder minilm]

Writes bench/results/retrieval_DATASET.json (retrieval_DATASET_minilm_int8.json
for ``--encoder minilm-int8``) and a recall@k plot beside it (.png), as
{"MODE": {"ndcg@10", "recall@20", "recall@100", "mrr@10"}}. The collection is
built once (documents whole up to 512 words, title + text) under bench/.work/
and reused, so a second run only searches.

SciFact is judged with its test qrels (300 queries). SQuAD-open judges each dev
question's gold paragraph relevant among all 20,963 train+dev paragraphs
(5,665 questions; ``--limit`` samples fewer with a fixed seed).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from _common import DATA, ROOT, require_data, write_result  # noqa: E402

from ragmix.encoders import canonical_name  # noqa: E402
from ragmix.evaluation.datasets import load_beir, load_qa, qa_retrieval_split  # noqa: E402
from ragmix.evaluation.retrieval_metrics import latency_summary  # noqa: E402
from ragmix.evaluation.run_retrieval import evaluate_retrieval, index_corpus  # noqa: E402

KEYS = ("ndcg@10", "recall@1", "recall@5", "recall@20", "recall@100", "mrr@10")
# mode name in the results -> (Collection.search mode, fusion)
# "hybrid" is the default fusion (min-max weighted, 0.5); "hybrid-rrf" is RRF, k=60
MODES = {"bm25": ("bm25", "weighted"), "dense": ("dense", "weighted"),
         "hybrid": ("hybrid", "weighted"), "hybrid-rrf": ("hybrid", "rrf")}
PUBLISHED = {  # literature figures, as ../shared/data/README.md quotes them
    "scifact": {
        "bm25 (Anserini, k1=0.9 b=0.4)": {"ndcg@10": 0.6789, "recall@100": 0.9253},
        "bm25 (BEIR paper)": {"ndcg@10": 0.665},
        "bm25 + MiniLM cross-encoder (BEIR)": {"ndcg@10": 0.688},
        "all-MiniLM-L6-v2 (MTEB)": {"ndcg@10": 0.645},
    },
    "squad": {},
}
# Plain-script runs on this copy of the data that ../shared/data/README.md reports: not
# published, and not ours. bench/bench_retrieval_peer.py is ragmix's own plain baseline.
DATA_README = {
    "scifact": {"bm25 (plain bm25s, k1=1.2 b=0.75)": {"ndcg@10": 0.679, "recall@100": 0.913}},
    "squad": {"bm25 (plain, all 10,570 SQuAD dev questions)":
              {"recall@1": 0.715, "recall@5": 0.883, "recall@20": 0.947}},
}


def load_split(dataset: str, data: Path, limit: int | None, seed: int):
    """(corpus path, queries, qrels) of the dataset's evaluation split."""
    if dataset == "scifact":
        split = load_beir(require_data(data), "test")
        corpus, queries, qrels = split.corpus, split.queries, split.qrels
    else:
        folder = require_data(data)
        queries, qrels = qa_retrieval_split(load_qa(folder / "dev-questions.jsonl"))
        corpus = folder / "paragraphs.jsonl"
    if limit is not None and limit < len(qrels):
        keep = sorted(random.Random(seed).sample(sorted(qrels), limit))
        qrels = {qid: qrels[qid] for qid in keep}
    return corpus, queries, qrels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("scifact", "squad"), default="scifact")
    parser.add_argument("--data", type=Path, help="dataset folder (default ../shared/data/...)")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    parser.add_argument("--limit", type=int, help="sample this many queries (seeded)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = args.data or DATA / ("scifact" if args.dataset == "scifact" else "squad-open")
    corpus, queries, qrels = load_split(args.dataset, data, args.limit, args.seed)
    work = ROOT / "bench" / ".work" / f"retrieval-{args.dataset}-{canonical_name(args.encoder)}"
    print(f"indexing {corpus} into {work} (reused when already built)", flush=True)
    col, _ = index_corpus(work, corpus, encoder=args.encoder)
    result: dict[str, object] = {}
    with col:
        for name in args.modes.split(","):
            mode, fusion = MODES[name]
            report = evaluate_retrieval(col.searcher(fusion=fusion), queries, qrels, mode=mode)
            result[name] = {key: round(report.metrics[key], 4) for key in KEYS}
            result[name]["query_ms_p50"] = round(
                latency_summary(report.latency_s.values())["p50"], 2)
            print(f"{name:<16}" + "".join(f"{key} {result[name][key]:.4f}  " for key in KEYS),
                  flush=True)
    # the default encoder's figures are the headline; others get their own file
    suffix = "" if canonical_name(args.encoder) == "all-MiniLM-L6-v2" else "_" + args.encoder
    path = write_result(f"retrieval_{args.dataset}{suffix.replace('-', '_')}.json", {
        **result, "encoder": canonical_name(args.encoder), "queries": len(qrels),
        "seed": args.seed if args.limit else None, "published": PUBLISHED[args.dataset],
        "data_readme_baselines": DATA_README[args.dataset]})
    from ragmix.evaluation.plots import plot_recall_curves

    png = plot_recall_curves({m: v for m, v in result.items() if isinstance(v, dict)},
                             path.with_suffix(".png"),
                             title=f"{args.dataset}: recall@k ({canonical_name(args.encoder)})")
    print(f"wrote {path} and {png}")


if __name__ == "__main__":
    main()
