"""Open-domain QA on SQuAD-open dev: EM, F1, contains, answer recall@5, seconds per question.

    .venv/bin/python bench/bench_qa.py [--limit 500] [--modes stuff] [--retrieval hybrid]

``--modes`` is any of stuff, rag-sequence-thorough, rag-sequence-fast,
rag-token (comma-separated); every mode answers the same sampled questions.
``--suffix`` names the rows MODE+SUFFIX (``--limit 300 --suffix @300``).

Answers ``--limit`` dev questions (a fixed seeded sample, the same for every
mode) from the top k=5 passages of the SQuAD-open collection that
bench/bench_retrieval.py --dataset squad builds (all 20,963 paragraphs; built
here if missing), with the default generator in "stuff" mode (all k passages
in one prompt), or the paper's RAG-Sequence / RAG-Token over the same k
passages. Writes bench/results/qa_squad.json as
{"MODE": {"em", "f1", "contains", "answer_recall@5", "s_per_question", ...}} (modes not
run keep their previous rows): the frozen baselines that training must beat.
Each mode's answers are journalled in bench/.work while it runs, so rerunning
the same command after a crash resumes where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from _common import DATA, RESULTS, ROOT, require_data, write_result  # noqa: E402

from ragmix.encoders import canonical_name  # noqa: E402
from ragmix.evaluation.datasets import load_qa  # noqa: E402
from ragmix.evaluation.run_qa import evaluate_qa, sample_questions  # noqa: E402
from ragmix.evaluation.run_retrieval import index_corpus  # noqa: E402
from ragmix.modes import split_qa_mode  # noqa: E402

KEYS = ("em", "f1", "contains", "answer_recall@1", "answer_recall@5", "answer_recall@20",
        "s_per_question", "retrieval_ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "squad-open")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--retrieval", default="hybrid", choices=("bm25", "dense", "hybrid"))
    parser.add_argument("--fusion", default="weighted", choices=("rrf", "weighted"))
    parser.add_argument("--generator", default="smollm2")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--modes", default="stuff", help="comma-separated, see above")
    parser.add_argument("--beams", type=int, default=None)
    parser.add_argument("--suffix", default="",
                        help="appended to each mode's key in the results file, so a run on "
                             "other settings (e.g. --limit 300) keeps the default run's row")
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
    rows: dict[str, dict] = {}
    reports = {}
    with col, RichProgress(Console(stderr=True)) as progress:
        for mode in args.modes.split(","):
            generation, decoding = split_qa_mode(mode)
            report = evaluate_qa(
                col.searcher(fusion=args.fusion), generator, examples, mode=args.retrieval, k=args.k,
                max_new_tokens=args.max_new_tokens, progress=progress, generation=generation,
                beams=args.beams, decoding=decoding,
                journal=_journal(args, mode))
            row = {key: round(report.metrics[key], 4) for key in KEYS if key in report.metrics}
            row.update({"retrieval": args.retrieval, "fusion": args.fusion, "k": args.k,
                        "generator": args.generator, "max_new_tokens": args.max_new_tokens,
                        "questions": len(examples), "seed": args.seed, "beams": args.beams})
            rows[mode + args.suffix], reports[mode] = row, report
            print(f"{mode}  " + "  ".join(f"{key} {value}" for key, value in row.items()),
                  flush=True)

    path = RESULTS / "qa_squad.json"  # modes not run this time keep their rows
    previous = json.loads(path.read_text()) if path.exists() else {}
    kept = {k: v for k, v in previous.items() if isinstance(v, dict) and "em" in v}
    examples_out = {mode + args.suffix: [
        {"question": r.question, "answers": list(r.answers[:3]), "prediction": r.prediction}
        for r in rep.results[:8]] for mode, rep in reports.items()}
    path = write_result("qa_squad.json", {
        **kept, **rows, "encoder": canonical_name(args.encoder),
        "examples": {**previous.get("examples", {}), **examples_out}})
    work = ROOT / "bench" / ".work"
    work.mkdir(parents=True, exist_ok=True)
    for mode, report in reports.items():
        out = work / f"qa_squad_{mode}{args.suffix}.json"
        out.write_text(json.dumps(report.to_dict(), indent=1))
        _journal(args, mode).unlink(missing_ok=True)
    print(f"wrote {path}")


def _journal(args: argparse.Namespace, mode: str) -> Path:
    """Where one mode's answers are journalled while it runs: a rerun after a crash resumes."""
    key = json.dumps({k: str(v) for k, v in sorted(vars(args).items()) if k != "modes"})
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return ROOT / "bench" / ".work" / f"qa_squad_{mode}-{digest}.journal.jsonl"


if __name__ == "__main__":
    main()
