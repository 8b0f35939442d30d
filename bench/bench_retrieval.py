"""Retrieval quality on SciFact (BEIR test split), every mode, beside the published figures.

    .venv/bin/python bench/bench_retrieval.py [--data ../shared/data/scifact] [--encoder minilm]

Writes bench/results/retrieval_scifact.json (retrieval_scifact_minilm_int8.json
for ``--encoder minilm-int8``) as
{"MODE": {"ndcg@10", "recall@20", "recall@100", "mrr@10"}}. The collection is
built once (documents whole up to 512 words, title + text) under bench/.work/
and reused. SQuAD-open comes next (issue 3).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from _common import DATA, ROOT, require_data, write_result  # noqa: E402

from ragmix.encoders import canonical_name  # noqa: E402
from ragmix.evaluation.datasets import load_beir  # noqa: E402
from ragmix.evaluation.run_retrieval import evaluate_retrieval, index_corpus  # noqa: E402

KEYS = ("ndcg@10", "recall@20", "recall@100", "mrr@10")
# mode name in the results -> (Collection.search mode, fusion)
MODES = {"bm25": ("bm25", "rrf"), "dense": ("dense", "rrf"),
         "hybrid": ("hybrid", "rrf"), "hybrid-weighted": ("hybrid", "weighted")}
PUBLISHED = {  # ../shared/data/README.md
    "bm25 (Anserini, k1=0.9 b=0.4)": {"ndcg@10": 0.6789, "recall@100": 0.9253},
    "bm25 (BEIR paper)": {"ndcg@10": 0.665},
    "bm25 + MiniLM cross-encoder (BEIR)": {"ndcg@10": 0.688},
    "all-MiniLM-L6-v2 (MTEB)": {"ndcg@10": 0.645},
}


class _Fused:
    """A collection searched with one fusion setting."""

    def __init__(self, collection, fusion: str) -> None:
        self.collection, self.fusion = collection, fusion

    def search(self, query: str, k: int, *, mode: str):
        return self.collection.search(query, k, mode=mode, fusion=self.fusion)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "scifact")
    parser.add_argument("--encoder", default="minilm")
    args = parser.parse_args()
    split = load_beir(require_data(args.data), "test")
    work = ROOT / "bench" / ".work" / f"retrieval-scifact-{canonical_name(args.encoder)}"
    col, _ = index_corpus(work, split.corpus, encoder=args.encoder)
    result: dict[str, object] = {}
    with col:
        for name, (mode, fusion) in MODES.items():
            report = evaluate_retrieval(_Fused(col, fusion), split.queries, split.qrels, mode=mode)
            result[name] = {key: round(report.metrics[key], 4) for key in KEYS}
            print(f"{name:<16}" + "".join(f"{key} {result[name][key]:.4f}  " for key in KEYS))
    # the default encoder's figures are the headline; others get their own file
    suffix = "" if canonical_name(args.encoder) == "all-MiniLM-L6-v2" else "_" + args.encoder
    path = write_result(f"retrieval_scifact{suffix.replace('-', '_')}.json", {
        **result, "encoder": canonical_name(args.encoder), "queries": len(split.qrels),
        "published": PUBLISHED})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
