"""Open-domain QA on SQuAD-open dev: EM, F1, answer recall@5 and seconds per question.

    .venv/bin/python bench/bench_qa.py [--limit 500] [--retrieval hybrid] [--generator smollm2]

Answers ``--limit`` dev questions (a fixed seeded sample, the same for every
mode) from the top k=5 passages of the SQuAD-open collection that
bench/bench_retrieval.py --dataset squad builds (all 20,963 paragraphs; built
here if missing), with the default generator in "stuff" mode (all k passages
in one prompt). Writes bench/results/qa_squad.json as
{"MODE": {"em", "f1", "answer_recall@5", "s_per_question", ...}}: the frozen
baseline that RAG-Sequence/RAG-Token and training must beat.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from _common import DATA, RESULTS, ROOT, require_data, write_result  # noqa: E402

from ragmix.encoders import canonical_name  # noqa: E402
from ragmix.evaluation.datasets import load_qa  # noqa: E402
from ragmix.evaluation.run_qa import evaluate_qa, sample_questions  # noqa: E402
from ragmix.evaluation.run_retrieval import index_corpus  # noqa: E402

KEYS = ("em", "f1", "answer_recall@1", "answer_recall@5", "answer_recall@20", "s_per_question",
        "retrieval_ms")


class _Fused:
    def __init__(self, collection, fusion: str) -> None:
        self.collection, self.fusion = collection, fusion

    def search(self, query: str, k: int, *, mode: str):
        return self.collection.search(query, k, mode=mode, fusion=self.fusion)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "squad-open")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--retrieval", default="hybrid", choices=("bm25", "dense", "hybrid"))
    parser.add_argument("--fusion", default="rrf", choices=("rrf", "weighted"))
    parser.add_argument("--generator", default="smollm2")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()

    folder = require_data(args.data)
    examples = sample_questions(load_qa(folder / "dev-questions.jsonl"), args.limit, args.seed)
    work = ROOT / "bench" / ".work" / f"retrieval-squad-{canonical_name(args.encoder)}"
    print(f"collection {work} (built if missing)", flush=True)
    col, _ = index_corpus(work, folder / "paragraphs.jsonl", encoder=args.encoder)
    from ragmix.cli.progress import RichProgress
    from ragmix.generation import load_generator
    from rich.console import Console

    generator = load_generator(args.generator)
    with col, RichProgress(Console(stderr=True)) as progress:
        report = evaluate_qa(_Fused(col, args.fusion), generator, examples, mode=args.retrieval,
                             k=args.k, max_new_tokens=args.max_new_tokens, progress=progress)
    row = {key: round(report.metrics[key], 4) for key in KEYS if key in report.metrics}
    row.update({"retrieval": args.retrieval, "fusion": args.fusion, "k": args.k,
                "generator": args.generator, "max_new_tokens": args.max_new_tokens})
    print("stuff  " + "  ".join(f"{key} {value}" for key, value in row.items()), flush=True)

    path = RESULTS / "qa_squad.json"  # other modes (issue 4) live beside "stuff": merge
    previous = json.loads(path.read_text()) if path.exists() else {}
    modes = {k: v for k, v in previous.items() if isinstance(v, dict) and "em" in v}
    path = write_result("qa_squad.json", {
        **modes, "stuff": row, "questions": len(examples), "seed": args.seed,
        "encoder": canonical_name(args.encoder),
        "examples": [{"question": r.question, "answers": list(r.answers[:3]),
                      "prediction": r.prediction} for r in report.results[:10]]})
    (ROOT / "bench" / ".work").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / ".work" / "qa_squad_stuff.json").write_text(
        json.dumps(report.to_dict(), indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
