"""Grounded decoding against free decoding: ragmix's docs QA set and SQuAD-open, the same questions.

    .venv/bin/python bench/bench_grounded.py docs  [--modes stuff,stuff-grounded,...]
    .venv/bin/python bench/bench_grounded.py squad [--split dev|train] [--limit 300]
                                                   [--generator smollm2|FOLDER] [--key NAME]
    .venv/bin/python bench/bench_grounded.py speed [--run FOLDER] [--suffix=-ROW]

``docs``: the questions of bench/data/docs_qa.jsonl, asked of a collection of
docs/ built as ``make demo`` builds it (the defaults of ``ragmix index``).
``squad``: SQuAD-open questions asked of the 20,963-paragraph collection that
bench/bench_retrieval.py --dataset squad builds; ``--split dev`` is the 300
seeded dev questions of the BENCHMARKS tables, ``--split train`` SQuAD train
questions that the joint-training bench never trains on (seed 1, as its
``--eval-on heldout``), for choosing settings without looking at dev.

Modes are ``eval qa``'s (MODE[-DECODING], see ragmix.modes), k=5 hybrid
passages, SmolLM2 frozen unless ``--generator`` names a trained folder; every
mode answers the same questions. ``--scoring`` picks how grounded spans are
scored (constrained, raw, mean or pmi), ``--prompt`` grounded RAG-Sequence's
prompt style (copy, answer, few-shot). Writes bench/results/grounded.json as
{KEY: {MODE: {"em", "f1", "contains", "answer_recall@5", "s_per_question"}}};
keys not run keep their rows. Answers are journalled in bench/.work, so a
rerun after a crash resumes.

``speed`` gathers the issue's cost figures into the "speed" key, each from
the file that measured it: bf16/fp32 ratios and greedy tokens/s from
bench/results/dtype.json (bench/bench_dtype.py), the joint training's minutes
from the run's own record (bench_training.py rag), and grounded against fast
RAG-Sequence seconds per question on the same 300 dev questions with the same
trained generator (this bench's squad_trained row and bench_training.py's
evaluation in training.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from _common import DATA, RESULTS, ROOT, require_data, write_result  # noqa: E402

from ragmix.encoders import canonical_name  # noqa: E402
from ragmix.evaluation.datasets import load_qa  # noqa: E402
from ragmix.evaluation.run_qa import evaluate_qa, sample_questions  # noqa: E402
from ragmix.generation import prompt as prompt_module  # noqa: E402
from ragmix.generation.prompt import DEFAULT_GROUNDED_PROMPT, GROUNDED_PROMPT_STYLES  # noqa: E402
from ragmix.modes import QA_MODES, split_qa_mode  # noqa: E402

KEYS = ("em", "f1", "contains", "answer_recall@1", "answer_recall@5", "s_per_question")
DEFAULT_MODES = "stuff,stuff-grounded,rag-sequence-fast,rag-sequence-grounded,rag-token"
WORK = ROOT / "bench" / ".work"
TRAINED_RUN = "squad-rag-sequence-k3-s300x4-top10-w128-lr0.001"  # bench_training.py rag's default


def docs_setup(args):
    """The docs/ collection (built like make demo's) and the docs QA questions."""
    from ragmix.store import Collection

    col = Collection.open_or_create(WORK / "docs-collection")
    col.add([ROOT / "docs"])
    return col, load_qa(ROOT / "bench" / "data" / "docs_qa.jsonl"), "docs_qa"


def squad_setup(args):
    from ragmix.evaluation.run_retrieval import index_corpus
    from ragmix.training.pairs import load_qa_pairs

    folder = require_data(args.data)
    col, _ = index_corpus(WORK / f"retrieval-squad-{canonical_name('minilm')}",
                          folder / "paragraphs.jsonl", encoder="minilm")
    if args.split == "dev":
        questions = sample_questions(load_qa(folder / "dev-questions.jsonl"), args.limit, 0)
    else:  # the questions bench_training.py's --eval-on heldout answers
        pool = load_qa_pairs(folder / "train-v1.1.json.gz")
        seen = {ex.id for ex in random.Random(0).sample(pool, 1200)}
        questions = sample_questions([ex for ex in pool if ex.id not in seen], args.limit, 1)
    trained = args.generator != "smollm2"
    key = args.key or ("squad_trained" if trained else "squad_frozen") + (
        "" if args.split == "dev" else "_train_questions")
    return col, questions, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=("docs", "squad", "speed"))
    parser.add_argument("--run", type=Path, default=WORK / "runs" / TRAINED_RUN,
                        help="speed: the joint-training run folder")
    parser.add_argument("--data", type=Path, default=DATA / "squad-open")
    parser.add_argument("--split", choices=("dev", "train"), default="dev")
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--modes", default=DEFAULT_MODES)
    parser.add_argument("--generator", default="smollm2")
    parser.add_argument("--scoring", choices=("constrained", "raw", "mean", "pmi"), default="constrained")
    parser.add_argument("--prompt", choices=GROUNDED_PROMPT_STYLES, default=DEFAULT_GROUNDED_PROMPT,
                        help="grounded RAG-Sequence's prompt style (ragmix.generation.prompt)")
    parser.add_argument("--beams", type=int, default=None,
                        help="default: 4 for grounded and rag-sequence, 1 for rag-token")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--key", help="results key (default from the task, split, generator)")
    parser.add_argument("--suffix", default="", help="appended to each mode's row name")
    args = parser.parse_args()
    if args.task == "speed":
        return speed(args)
    modes = args.modes.split(",")
    unknown = sorted(set(modes) - set(QA_MODES))
    if unknown:
        raise SystemExit(f"unknown modes {unknown}; choose from {QA_MODES}")

    from ragmix.cli.progress import RichProgress
    from ragmix.generation import load_generator
    from rich.console import Console

    prompt_module.DEFAULT_GROUNDED_PROMPT = args.prompt  # read at each prompt's build
    col, questions, key = (docs_setup if args.task == "docs" else squad_setup)(args)
    generator = load_generator(args.generator)
    rows = {}
    with col, RichProgress(Console(stderr=True)) as progress:
        for mode in modes:
            generation, decoding = split_qa_mode(mode)
            report = evaluate_qa(
                col.searcher(), generator, questions, mode="hybrid", k=args.k,
                max_new_tokens=args.max_new_tokens, progress=progress, generation=generation,
                decoding=decoding, scoring=args.scoring, beams=args.beams,
                journal=_journal(args, key, mode))
            row = {name: round(report.metrics[name], 4) for name in KEYS if name in report.metrics}
            row.update({"questions": len(questions), "k": args.k, "beams": args.beams,
                        "generator": args.generator, "max_new_tokens": args.max_new_tokens,
                        **({"scoring": args.scoring, "prompt": args.prompt}
                           if decoding == "grounded" else {}),
                        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                        "examples": [{"question": r.question, "answers": list(r.answers[:2]),
                                      "prediction": r.prediction} for r in report.results[:6]]})
            rows[mode + args.suffix] = row
            print(f"{key} {mode}{args.suffix}  " + "  ".join(
                f"{n} {row[n]}" for n in KEYS if n in row), flush=True)
    path = RESULTS / "grounded.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    kept = {k: v for k, v in previous.items() if k not in ("machine", "measured_at")}
    kept[key] = {**kept.get(key, {}), **rows}
    print(f"wrote {write_result('grounded.json', kept)}")


def speed(args) -> None:
    """The cost figures, each read from the results file or run record that measured it."""
    dtype = json.loads((RESULTS / "dtype.json").read_text())
    run = json.loads((args.run / "ragmix_rag.json").read_text())
    trained = json.loads((RESULTS / "training.json").read_text())["squad_rag"][args.run.name]
    path = RESULTS / "grounded.json"
    previous = json.loads(path.read_text())
    row_name = "rag-sequence-grounded" + args.suffix  # the defaults' row: --suffix names it
    grounded = previous["squad_trained"][row_name]
    fast = trained["eval"]
    row = {"embed_bf16_vs_fp32": dtype["embed_bf16_vs_fp32"],
           "score_bf16_vs_fp32": dtype["score_bf16_vs_fp32"],
           "decode_tok_s": {k: dtype["decode_tok_s"][k] for k in ("before", "after")},
           "train_300_steps_min": round(run["seconds"] / 60, 1),
           "train_steps": run["steps"],
           "grounded_vs_fast": round(grounded["s_per_question"] / fast["s_per_question"], 2),
           "grounded_s_per_question": grounded["s_per_question"],
           "fast_s_per_question": fast["s_per_question"],
           "sources": {"dtype": "bench/results/dtype.json (bench/bench_dtype.py)",
                       "training": f"{args.run.name}/ragmix_rag.json (bench_training.py rag)",
                       "grounded": f"grounded.json squad_trained {row_name}",
                       "fast": f"training.json squad_rag {args.run.name} eval (the run "
                               "that last wrote that row: same settings and seed, the same "
                               "300 dev questions)"}}
    kept = {k: v for k, v in previous.items() if k not in ("machine", "measured_at")}
    kept["speed"] = row
    print(json.dumps(row, indent=1))
    print(f"wrote {write_result('grounded.json', kept)}")


def _journal(args: argparse.Namespace, key: str, mode: str) -> Path:
    """Where one mode's answers are journalled while it runs: a rerun after a crash resumes."""
    settings = {k: str(v) for k, v in sorted(vars(args).items()) if k not in ("modes", "suffix")}
    digest = hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:10]
    return WORK / f"grounded_{key}_{mode}-{digest}.journal.jsonl"


if __name__ == "__main__":
    main()
