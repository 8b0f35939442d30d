"""Two-stage retrieval: first stages (BM25, dense, hybrid, SPLADE) and rerankers on top of them.

    .venv/bin/python bench/bench_rerank.py scifact [--pipelines hybrid,hybrid+li@0.5]
        [--split heldout] [--encoder MODEL]
    .venv/bin/python bench/bench_rerank.py squad [--limit 1000] [--pipelines ...] [--split heldout]
    .venv/bin/python bench/bench_rerank.py train ce-scifact-bce   # a model the pipelines name
    .venv/bin/python bench/bench_rerank.py ce-latency [ce-scifact-listwise]  # precisions timed
    .venv/bin/python bench/bench_rerank.py sparse-speed  # SPLADE's index against BM25's

A pipeline is ``FIRST[+RERANKER[@WEIGHT]]...``: FIRST a retrieval mode of the
collection (``hybrid`` is dense MiniLM + BM25, weighted fusion), RERANKER one of
:data:`_rerank_models.RERANKERS` (``li`` untrained late interaction, ``ql``
query likelihood under SmolLM2, ``ce-DATA-LOSS`` a cross-encoder trained here,
``li-DATA`` a trained MaxSim model), WEIGHT the reranker's share in the
min-max fusion with the first stage (default 1: the reranker alone). Each
reranker re-scores the first stage's top ``--depth`` (50) chunks; a second
``+RERANKER@WEIGHT`` re-scores the first one's output the same way, its
fusion's first stage being the fused score before it (ragmix's RerankChain:
``ragmix search --rerank query-likelihood@0.7,late-interaction@0.3``).

SciFact: the 300 test queries; ``--split heldout`` scores instead the seeded
tenth of the train queries that no model here trains on (bench_training.py's
split), to choose weights and losses on. SQuAD-open: a seeded sample of
``--limit`` dev questions (default 1000), judged by their gold paragraph among
all 20,963 paragraphs; ``--split heldout`` samples SQuAD train questions no
model trains on. Collections are bench_retrieval.py's (bench/.work/, reused):
documents whole (cut only past 512 words). ``--chunker words`` indexes 100-word
passages instead, ``--chunker semantic`` semantic chunks under a 256-token cap
(``--chunk-size`` changes either), each in its own collection, and names its
rows ``CHUNKER-SIZE/PIPELINE``; a document's score is its best chunk's.
``--encoder MODEL`` puts a fine-tuned dense encoder under the first stage (a
model bench_training.py saved, whose SciFact collection is reused); its rows are
``MODEL/PIPELINE`` and count as having seen the dataset's training data.

Results merge into bench/results/rerank.json as
{"scifact": {PIPELINE: {"ndcg@10", "recall@100", "trained_on_scifact", "ms_p50"}},
 "squad": {PIPELINE: {"recall@1", "recall@5", "recall@20", "ms_p50"}}}, held-out
rows under "scifact_heldout" / "squad_heldout"; ``ms_p50`` is the median time of
one query's search, first stage and reranking together.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from _common import DATA, RESULTS, ROOT, require_data, write_result  # noqa: E402
from _rerank_models import (MODELS, RERANKERS, bench_reranker,  # noqa: E402
                            load_bench_reranker, train_model)

from ragmix.encoders import canonical_name  # noqa: E402

DATA_FOLDERS = {"scifact": "scifact", "squad": "squad-open"}  # under ../shared/data
KEYS = {"scifact": ("ndcg@10", "recall@100", "mrr@10"),
        "squad": ("recall@1", "recall@5", "recall@20")}
DEFAULT_PIPELINES = {"scifact": "bm25,dense,hybrid,hybrid+li,hybrid+li@0.5",
                     "squad": "bm25,dense,hybrid,hybrid+li,hybrid+li@0.5"}
PUBLISHED = {  # SciFact nDCG@10, as issue 17 and ../shared/data/README.md quote them
    "BM25 + MiniLM cross-encoder (BEIR)": 0.688, "ColBERTv2": 0.69, "SPLADE++": 0.704,
    "bge-small-en-v1.5": 0.713, "monoT5-3B reranking": 0.766, "GPT-4 listwise reranking": 0.750,
}
HELDOUT_SEED, HELDOUT_FRACTION = 0, 0.1  # bench_training.py's held-out train queries


def scifact_heldout_ids(folder: Path) -> set[str]:
    """The seeded tenth of SciFact's train queries that training here never sees."""
    from ragmix.training.pairs import load_beir_pairs

    ids = sorted(p.query_id for p in load_beir_pairs(folder, "train").pairs)
    return set(random.Random(HELDOUT_SEED).sample(ids, round(HELDOUT_FRACTION * len(ids))))


def squad_heldout_ids(train_file: Path, n: int = 1000) -> set[str]:
    """A seeded sample of SQuAD train question ids that training here never sees."""
    from ragmix.training.pairs import load_squad_pairs

    ids = sorted(p.query_id for p in load_squad_pairs(train_file).pairs)
    return set(random.Random(HELDOUT_SEED).sample(ids, n))


def load_queries(dataset: str, split: str, data: Path, limit: int | None):
    """(corpus path, queries, qrels) of the split scored."""
    from ragmix.evaluation.datasets import load_beir, load_qa, qa_retrieval_split

    if dataset == "scifact":
        if split == "test":
            part = load_beir(data, "test")
            return part.corpus, part.queries, part.qrels
        part, keep = load_beir(data, "train"), scifact_heldout_ids(data)
        return part.corpus, part.queries, {q: j for q, j in part.qrels.items() if q in keep}
    if split == "test":
        queries, qrels = qa_retrieval_split(load_qa(data / "dev-questions.jsonl"))
    else:
        from ragmix.training.pairs import load_squad_pairs

        keep = squad_heldout_ids(data / "train-v1.1.json.gz")
        pairs = [p for p in load_squad_pairs(data / "train-v1.1.json.gz").pairs
                 if p.query_id in keep]
        queries = {p.query_id: p.query for p in pairs}
        qrels = {p.query_id: {p.positives[0]: 1} for p in pairs}
    n = limit or 1000
    if n < len(qrels):
        keep_ids = sorted(random.Random(0).sample(sorted(qrels), n))
        qrels = {q: qrels[q] for q in keep_ids}
    return data / "paragraphs.jsonl", queries, qrels


def parse_pipeline(name: str) -> tuple[str, list[tuple[str, float]]]:
    """``"hybrid+ql@0.5+li@0.3"`` -> ("hybrid", [("ql", 0.5), ("li", 0.3)]): the first stage,
    then each reranker in turn over the one before it (weight 1 when none is given)."""
    first, *rest = name.split("+")
    stages = []
    for part in rest:
        reranker, _, weight = part.partition("@")
        stages.append((reranker, float(weight) if weight else 1.0))
    return first, stages


def score_pipelines(args: argparse.Namespace) -> None:
    from ragmix.evaluation.retrieval_metrics import latency_summary
    from ragmix.evaluation.run_retrieval import evaluate_retrieval, index_corpus
    from ragmix.rerank import RerankChain, RerankedSearch, ScoreReranker

    data = require_data(args.data or DATA / DATA_FOLDERS[args.dataset])
    corpus, queries, qrels = load_queries(args.dataset, args.split, data, args.limit)
    chunker, label = bench_chunker(args.chunker, args.chunk_size)
    encoder, work = bench_encoder(args.encoder, args.dataset, label)
    if args.encoder:  # rows of a fine-tuned first stage: ENCODER/PIPELINE
        label = "/".join(filter(None, (Path(encoder).name, label)))
    label = "/".join(filter(None, (args.tag, label)))
    print(f"indexing {corpus} into {work} (reused when already built)", flush=True)
    col, _ = index_corpus(work, corpus, encoder=encoder, chunker=chunker,
                          progress=PrintProgress())
    key = args.dataset if args.split == "test" else f"{args.dataset}_heldout"
    path = RESULTS / "rerank.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    rows = results.setdefault(key, {})
    k = 100 if args.dataset == "scifact" else 20
    scorers: dict[str, object] = {}
    first_ms: dict[tuple, float] = {}  # rerankers -> p50 of the pipeline that scored afresh
    with col:
        for name in (args.pipelines or DEFAULT_PIPELINES[args.dataset]).split(","):
            first, stages = parse_pipeline(name)
            searcher, chain = col.searcher(), []
            trained = args.encoder is not None  # a fine-tuned encoder: counted as trained here
            fresh = True  # no reranker of this row has scored a pair yet: its time is its cost
            for reranker, weight in stages:
                if reranker not in scorers:
                    scorers[reranker] = load_bench_reranker(reranker, work)
                    if reranker.startswith("li") and args.warm:
                        warm(scorers[reranker][0].scorer, col)
                scorer, trained_here = scorers[reranker]
                fresh = fresh and scorer.computed == 0
                trained = trained or (trained_here == args.dataset)
                chain.append(ScoreReranker(scorer, weight=weight))
            if chain:  # ragmix's RerankChain: what --rerank NAME@W,NAME@W runs
                searcher = RerankedSearch(searcher, RerankChain(chain), depth=args.depth)
            report = evaluate_retrieval(searcher, queries, qrels, mode=first, k=k)
            row = {m: round(report.metrics[m], 4) for m in KEYS[args.dataset]}
            row["ms_p50"] = round(latency_summary(report.latency_s.values())["p50"], 1)
            combo = tuple(r for r, _ in stages)
            if combo and fresh:
                first_ms[combo] = row["ms_p50"]
            elif combo:  # an earlier pipeline scored some or all of its pairs: its time is the cost
                row["ms_p50"], row["ms_p50_from_first_run"] = first_ms.get(combo), True
            row["depth"] = args.depth if stages else None
            if args.dataset == "scifact":
                row["trained_on_scifact"] = trained
            shown = f"{label}/{name}" if label else name
            rows[shown] = row
            print(f"{shown:<28}" + "".join(f"  {m} {v}" for m, v in row.items()), flush=True)
            results["published_scifact_ndcg@10"] = PUBLISHED
            results[f"{key}_queries"] = len(qrels)
            write_result("rerank.json", results)  # after every pipeline: nothing lost
    print(f"wrote {path}")


def bench_encoder(name: str | None, dataset: str, chunk_label: str) -> tuple[str, Path]:
    """(encoder, collection folder) for ``--encoder``: the packaged MiniLM by default, or
    a model folder (a name under bench/.work/models, as bench_training.py saves them).
    A bench_training.py model's SciFact collection (bench/.work/retrieval-NAME) is reused."""
    work = ROOT / "bench" / ".work"
    if name is None:
        return "minilm", work / (f"retrieval-{dataset}-{canonical_name('minilm')}"
                                 + (f"-{chunk_label}" if chunk_label else ""))
    folder = Path(name) if Path(name).is_dir() else MODELS / name
    if not folder.is_dir():
        known = sorted(p.name for p in MODELS.glob("*/") if not p.name.startswith(("ce-", "li-")))
        raise SystemExit(f"--encoder {name!r} is neither a folder nor a model in {MODELS} "
                         f"({', '.join(known) or 'none trained'}): train one with "
                         "bench/bench_training.py retriever")
    shared = dataset == "scifact" and not chunk_label and folder.parent == MODELS
    suffix = "" if shared else f"-{dataset}" + (f"-{chunk_label}" if chunk_label else "")
    return str(folder), work / f"retrieval-{folder.name}{suffix}"


def bench_chunker(name: str, size: int | None):
    """(chunker or None for the eval default, row-name prefix) for ``--chunker``."""
    from ragmix.chunking import SIZE_OPTION, make_chunker

    if name == "whole":  # the eval default: documents cut only past 512 words
        return None, ""
    size = size or {"words": 100, "semantic": 256}[name]
    return make_chunker(name, **{SIZE_OPTION[name]: size}), f"{name}-{size}"


class PrintProgress:
    """Indexing progress as a line every 2,000 chunks (a log file, not a terminal)."""

    def start(self, stage: str, total: int | None) -> None:
        self.stage, self.done = stage, 0
        print(f"  {stage}", flush=True)

    def advance(self, stage: str, n: int = 1) -> None:
        before, self.done = self.done, self.done + n
        if stage == "embedding" and before // 2000 != self.done // 2000:
            print(f"  {stage} {self.done}", flush=True)


def warm(scorer, col) -> None:
    """Store every passage's token vectors first (ragmix rerank-store), so reranking times
    the query, not passages seen for the first time."""
    sys.path.insert(0, str(ROOT / "src"))
    from ragmix.cli.rerank_cmd import passage_texts

    texts = passage_texts(col)
    print(f"storing token vectors of {len(texts)} passages", flush=True)
    shown = [-1]

    def show(done: int, total: int) -> None:
        if 10 * done // max(total, 1) > shown[0]:  # every tenth
            shown[0] = 10 * done // max(total, 1)
            print(f"  {done}/{total}", flush=True)

    encoded = scorer.warm(texts, progress=show)
    print(f"  stored {encoded} new", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=("scifact", "squad", "train", "ce-latency",
                                         "sparse-speed"))
    parser.add_argument("model", nargs="?", help=f"train: one of {', '.join(RERANKERS)}; "
                        "ce-latency: a trained cross-encoder (default ce-scifact-listwise)")
    parser.add_argument("--pipelines", help="comma-separated FIRST[+RERANKER[@WEIGHT]]...")
    parser.add_argument("--split", choices=("test", "heldout"), default="test")
    parser.add_argument("--limit", type=int, help="squad: questions sampled (default 1000)")
    parser.add_argument("--depth", type=int, default=50, help="first-stage hits reranked")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--chunker", choices=("whole", "words", "semantic"), default="whole",
                        help="whole: documents as the evals index them (cut past 512 words); "
                             "words: 100-word passages; semantic: a 256-token cap; rows are "
                             "named CHUNKER-SIZE/PIPELINE")
    parser.add_argument("--chunk-size", type=int, help="words per passage or the token cap")
    parser.add_argument("--encoder", help="first stage's dense encoder: a folder, or a model "
                        "bench_training.py saved under bench/.work/models (rows are named "
                        "MODEL/PIPELINE and count as trained on the dataset); default MiniLM")
    parser.add_argument("--tag", help="a prefix for this run's row names (TAG/PIPELINE), so "
                        "rows under other settings (--depth) sit beside the default ones")
    parser.add_argument("--no-warm", dest="warm", action="store_false",
                        help="late interaction: do not store all token vectors first")
    args = parser.parse_args()
    if args.task == "train":
        if not args.model:
            sys.exit("train: name the model, e.g. ce-scifact-bce")
        train_model(args.model, DATA, scifact_heldout_ids, squad_heldout_ids)
        return
    if args.task == "ce-latency":  # see _rerank_latency.py
        from _rerank_latency import run

        name = args.model or "ce-scifact-listwise"
        model = Path(bench_reranker(name, "cross-encoder")[1])
        data = require_data(args.data or DATA / DATA_FOLDERS["scifact"])
        run(model, bench_encoder(None, "scifact", "")[1], data, RESULTS / "rerank.json",
            write_result)
        return
    if args.task == "sparse-speed":  # see _sparse_speed.py
        from _sparse_speed import run as sparse_speed

        data = require_data(args.data or DATA / DATA_FOLDERS["scifact"])
        sparse_speed(bench_encoder(None, "scifact", "")[1], data, RESULTS / "rerank.json",
                     write_result)
        return
    args.dataset = args.task
    score_pipelines(args)


if __name__ == "__main__":
    main()
