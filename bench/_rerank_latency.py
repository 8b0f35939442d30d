"""How fast a cross-encoder scores a query's top 50, under each precision and pair length.

    .venv/bin/python bench/bench_rerank.py ce-latency [ce-scifact-listwise]

For 20 SciFact test queries, the hybrid top 50 of the SciFact collection are
scored by ragmix's :class:`~ragmix.rerank.cross_encoder.CrossEncoderScorer`
(batch 32, longest first) in turn as: float32; float32 weights under bf16
autocast (what the scorer did before it held bf16 weights, and what training
does); bf16 weights (the scorer's "bfloat16" now); bf16 weights with pairs
cut to 128 tokens; int8 dynamic quantisation of the Linear layers. Each
variant's p50 over the queries (one warm-up query first) and the Pearson
correlation of its scores with float32's are written to rerank.json under
"ce_latency". Variants run back to back in one process, so
their ratios compare like with like.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

QUERIES, DEPTH = 20, 50


def candidates(collection_dir: Path, data: Path) -> list[tuple[str, list[str]]]:
    """(query, the hybrid top-50 passages) for the first QUERIES SciFact test queries."""
    from ragmix import Collection
    from ragmix.evaluation.datasets import load_beir

    queries = load_beir(data, "test").queries
    picked = [queries[q] for q in sorted(queries)[:QUERIES]]
    with Collection.open(collection_dir) as col:
        return [(q, [h.text for h in col.search(q, DEPTH, mode="hybrid")]) for q in picked]


def variants(model: Path):
    """(label, scorer, context factory) per variant; contexts wrap each score call."""
    from contextlib import nullcontext

    from ragmix.dtypes import autocast, cpu_supports_bf16
    from ragmix.rerank.cross_encoder import CrossEncoderScorer

    out = [("float32", CrossEncoderScorer(model, dtype="float32"), nullcontext)]
    if cpu_supports_bf16():  # bf16 only where "auto" would choose it
        out += [
            ("float32 weights, bf16 autocast", out[0][1], lambda: autocast("bfloat16")),
            ("bf16 weights", CrossEncoderScorer(model, dtype="bfloat16"), nullcontext),
            ("bf16 weights, 128-token pairs",
             CrossEncoderScorer(model, dtype="bfloat16", max_length=128), nullcontext),
        ]
    out.append(("int8 dynamic (torch.ao), float32 activations", int8_scorer(model), nullcontext))
    return out


def int8_scorer(model: Path):
    """The float32 scorer with its Linear layers quantised to int8 (weights; activations are
    quantised on the fly): the lever ragmix does not use, timed to say why."""
    import warnings

    import torch

    from ragmix.rerank.cross_encoder import CrossEncoderScorer

    scorer = CrossEncoderScorer(model, dtype="float32")
    with warnings.catch_warnings():  # torch.ao's deprecation notice for eager quantisation
        warnings.simplefilter("ignore")
        scorer.model = torch.ao.quantization.quantize_dynamic(
            scorer.model, {torch.nn.Linear}, dtype=torch.qint8)
    return scorer


def measure(model: Path, collection_dir: Path, data: Path) -> dict[str, dict]:
    """{variant: {"ms_p50", "corr_with_float32", ...}} over the queries' candidates."""
    import numpy as np

    pool = candidates(collection_dir, data)
    rows, reference = {}, None
    for label, scorer, context in variants(model):
        with context():
            scorer.score(*pool[0])  # warm-up: first-call allocations, thread start
            times, scores = [], []
            for query, texts in pool:
                began = time.perf_counter()
                scores.append(scorer.score(query, texts))
                times.append((time.perf_counter() - began) * 1000)
        flat = np.concatenate(scores)
        reference = flat if reference is None else reference
        rows[label] = {"ms_p50": round(statistics.median(times), 1),
                       "corr_with_float32": round(float(np.corrcoef(reference, flat)[0, 1]), 5),
                       "max_length": scorer.max_length, "queries": len(pool), "depth": DEPTH}
        print(f"{label:<34} p50 {rows[label]['ms_p50']:7.1f} ms  "
              f"corr {rows[label]['corr_with_float32']}", flush=True)
    return rows


def run(model: Path, collection_dir: Path, data: Path, results_path: Path, write) -> None:
    rows = measure(model, collection_dir, data)
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    results["ce_latency"] = {"model": model.name, "variants": rows}
    write("rerank.json", results)
    print(f"wrote {results_path}")
