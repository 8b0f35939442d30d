"""Speed side by side with the peers, same texts, same process (issue 3; embedding part so far).

    .venv/bin/python bench/bench_speed.py [--data ../shared/data/scifact] [--passages 1000]

Embedding throughput: ragmix's int8 ONNX MiniLM (length-sorted batches) against
sentence-transformers ``encode`` on the fp32 model, on the same SciFact
passages, alternating runs. Writes bench/results/speed.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

import numpy as np  # noqa: E402
from _common import DATA, RESULTS, require_data, write_result  # noqa: E402

from ragmix.chunking import make_chunker  # noqa: E402
from ragmix.documents import load_paths  # noqa: E402
from ragmix.encoders import load_encoder  # noqa: E402


def passages(corpus: Path, n: int) -> list[str]:
    chunker, out = make_chunker("words"), []
    for doc in load_paths([corpus]):
        out += [c.text for c in chunker.chunk(doc.doc_id, doc.text)]
        if len(out) >= n:
            return out[:n]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "scifact")
    parser.add_argument("--passages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    texts = passages(require_data(args.data) / "corpus.jsonl", args.passages)
    fp32, int8 = load_encoder("minilm"), load_encoder("minilm-int8")
    model = fp32.model
    int8.encode_documents(texts[:64])  # warm-up both
    model.encode(texts[:64], batch_size=64, normalize_embeddings=True, show_progress_bar=False)

    seconds: dict[str, list[float]] = {"ragmix_int8": [], "sentence_transformers": []}
    for r in range(args.rounds):
        runs = [("ragmix_int8", lambda: int8.encode_documents(texts, batch_size=64)),
                ("sentence_transformers", lambda: model.encode(
                    texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False))]
        for name, fn in runs if r % 2 == 0 else runs[::-1]:
            began = time.perf_counter()
            vectors = fn()
            seconds[name].append(time.perf_counter() - began)
            if name == "ragmix_int8":
                ours = vectors
            else:
                theirs = np.asarray(vectors)
    best = {name: min(v) for name, v in seconds.items()}
    per_s = {name: round(len(texts) / s, 1) for name, s in best.items()}
    cosine = (ours * theirs).sum(axis=1)
    previous = json.loads((RESULTS / "speed.json").read_text()) if (RESULTS / "speed.json").exists() else {}
    previous.pop("machine", None)
    previous.pop("measured_at", None)
    result = {
        **previous,
        "embedding": {
            "passages": len(texts),
            "passages_per_s": per_s,
            "ratio_ragmix_over_sentence_transformers": round(
                per_s["ragmix_int8"] / per_s["sentence_transformers"], 3),
            "cosine_int8_vs_fp32": {"min": round(float(cosine.min()), 5),
                                    "mean": round(float(cosine.mean()), 5)},
            "seconds": {k: [round(x, 2) for x in v] for k, v in seconds.items()},
        },
    }
    path = write_result("speed.json", result)
    print(f"{'embedding':<24}{'passages/s':>12}")
    for name, value in per_s.items():
        print(f"{name:<24}{value:>12}")
    print(f"ratio {result['embedding']['ratio_ragmix_over_sentence_transformers']} "
          f"(target >= 1.3); cosine int8 vs fp32 min {cosine.min():.4f}; wrote {path}")


if __name__ == "__main__":
    main()
