"""Abstention: a confidence that tells right answers from unanswerable questions, and its threshold.

    .venv/bin/python bench/bench_abstention.py [--fit 160] [--test 100] [--mode rag-sequence]
                                               [--scoring constrained] [--generator smollm2]
                                               [--prompt copy|answer|few-shot]

Unanswerable questions are asked of a copy of the SQuAD-open collection from
which whole articles were deleted; answerable ones come from articles kept.
Each set is half and half:

- fit: SQuAD *train* questions that the joint-training bench never trains on
  (bench_grounded.py --split train's pool); a seeded 20 of their articles are
  deleted;
- test: the 300 seeded dev questions of the BENCHMARKS tables; a seeded half
  of their articles are deleted.

Every question is answered grounded (k=5 hybrid, never abstaining) and its
signals journalled (bench/.work, a rerun resumes). On the fit questions a
logistic regression (scikit-learn, standardised signals, L2) predicts "the
answer is right" (it contains a gold answer; an unanswerable question's
answer never is); the default threshold maximises TPR - FPR between
answerable-and-right and unanswerable fit questions (Youden's J). The
calibration is saved to src/ragmix/marginal/confidence.json, which ragmix
ships. On the test questions: AUROC between answerable-and-right and
unanswerable, and at the threshold the share of unanswerable questions that
abstain and of answerable ones still answered. Writes grounded.json
"abstention".
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import random
import shutil
from pathlib import Path

from ragmix._offline import set_offline_defaults  # noqa: E402

set_offline_defaults()

from _common import DATA, RESULTS, ROOT, require_data, write_result  # noqa: E402

from ragmix.encoders import canonical_name  # noqa: E402
from ragmix.modes import DEFAULT_SCORING, SCORINGS  # noqa: E402
from ragmix.generation import prompt as prompt_module  # noqa: E402
from ragmix.generation.prompt import DEFAULT_GROUNDED_PROMPT, GROUNDED_PROMPT_STYLES  # noqa: E402

WORK = ROOT / "bench" / ".work"
FIT_ARTICLES = 20


def article(doc_id: str) -> str:
    return doc_id.rsplit("/", 1)[0]


def split_questions(questions, deleted: set[str], n: int, seed: int):
    """n/2 questions of deleted articles (unanswerable) and n/2 of kept ones, seeded."""
    gone = [q for q in questions if article(q.gold_doc_id) in deleted]
    kept = [q for q in questions if article(q.gold_doc_id) not in deleted]
    random.Random(seed).shuffle(gone)
    random.Random(seed).shuffle(kept)
    gone, kept = gone[: n // 2], kept[: n - n // 2]
    if len(gone) < n // 2:
        raise SystemExit(f"only {len(gone)} unanswerable questions; ask for fewer")
    return [(q, False) for q in gone] + [(q, True) for q in kept]


def question_sets(folder: Path, args):
    from ragmix.evaluation.datasets import load_qa
    from ragmix.evaluation.run_qa import sample_questions
    from ragmix.training.pairs import load_qa_pairs

    dev = sample_questions(load_qa(folder / "dev-questions.jsonl"), 300, 0)
    dev_articles = sorted({article(q.gold_doc_id) for q in dev})
    dev_deleted = set(random.Random(args.seed).sample(dev_articles, len(dev_articles) // 2))
    pool = load_qa_pairs(folder / "train-v1.1.json.gz")
    seen = {ex.id for ex in random.Random(0).sample(pool, 1200)}  # bench_training's questions
    held = sample_questions([ex for ex in pool if ex.id not in seen], 20000, 1)
    train_articles = sorted({article(q.gold_doc_id) for q in held})
    train_deleted = set(random.Random(args.seed).sample(train_articles, FIT_ARTICLES))
    return (split_questions(held, train_deleted, args.fit, args.seed),
            split_questions(dev, dev_deleted, args.test, args.seed), dev_deleted | train_deleted)


def deleted_collection(folder: Path, deleted: set[str]):
    """A copy of the SQuAD-open collection without the ``deleted`` articles' paragraphs."""
    from ragmix.evaluation.run_retrieval import index_corpus
    from ragmix.store import Collection

    digest = hashlib.sha1("\n".join(sorted(deleted)).encode()).hexdigest()[:10]
    target = WORK / f"squad-abstention-{digest}"
    if not (target / "DELETED").exists():
        source = WORK / f"retrieval-squad-{canonical_name('minilm')}"
        col, _ = index_corpus(source, folder / "paragraphs.jsonl", encoder="minilm")
        col.close()
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
        with Collection.open(target) as col:
            gone = col.delete([glob.escape(a) + "/*" for a in sorted(deleted)])
        (target / "DELETED").write_text(json.dumps({"articles": sorted(deleted),
                                                    "paragraphs": len(gone)}))
        print(f"deleted {len(gone)} paragraphs of {len(deleted)} articles -> {target}")
    return Collection.open(target)


def answer_all(col, generator, items, args, split: str) -> list[dict]:
    """Each question's grounded answer and signals, journalled as it finishes."""
    from ragmix.evaluation.qa_metrics import contains
    from ragmix.generation.rag import RAG
    from ragmix.marginal.model import MarginalRAG

    if args.mode == "stuff":
        rag = RAG(col, generator, k=5, grounded=True, scoring=args.scoring, min_confidence=0)
    else:
        rag = MarginalRAG(col, generator, mode=args.mode, k=5, decoding="grounded",
                          scoring=args.scoring, min_confidence=0)
    settings = json.dumps([split, args.mode, args.scoring, args.generator, args.seed]
                          + ([] if args.prompt == "copy" else [args.prompt]))
    journal = WORK / f"abstention-{hashlib.sha1(settings.encode()).hexdigest()[:10]}.jsonl"
    done = {}
    if journal.exists():
        for line in journal.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # a line cut by a crash
                continue
            done[row["id"]] = row
    rows = []
    with journal.open("a") as out:
        for i, (q, answerable) in enumerate(items):
            if q.id not in done:
                answer = rag.ask(q.question)
                right = answerable and bool(contains(answer.text, q.answers))
                done[q.id] = {"id": q.id, "answerable": answerable, "right": right,
                              "prediction": answer.text, "answers": list(q.answers[:3]),
                              "signals": dict(answer.signals)}
                out.write(json.dumps(done[q.id]) + "\n")
                out.flush()
                print(f"  {split} {i + 1}/{len(items)} {'A' if answerable else 'U'}"
                      f"{'+' if right else ' '} {answer.text[:60]!r}", flush=True)
            rows.append(done[q.id])
    return rows


def fit(rows: list[dict]):
    """Logistic regression on the standardised signals, and the Youden threshold."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_curve

    from ragmix.marginal.confidence import SIGNALS, Calibration

    rows = [r for r in rows if r["signals"]]
    x = np.array([[r["signals"][f] for f in SIGNALS] for r in rows], dtype=float)
    y = np.array([r["right"] for r in rows], dtype=int)
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=1.0, max_iter=1000).fit((x - mean) / scale, y)
    calibration = Calibration(SIGNALS, tuple(mean), tuple(scale), tuple(model.coef_[0]),
                              float(model.intercept_[0]), 0.5)
    conf = np.array([calibration.confidence(r["signals"]) for r in rows])
    keep = np.array([r["right"] or not r["answerable"] for r in rows])
    fpr, tpr, thresholds = roc_curve(y[keep], conf[keep])
    best = int(np.argmax(tpr - fpr))
    threshold = float(min(1.0, thresholds[best]))
    return Calibration(SIGNALS, tuple(mean), tuple(scale), tuple(model.coef_[0]),
                       float(model.intercept_[0]), round(threshold, 4))


def score(rows: list[dict], calibration) -> dict:
    """AUROC (answerable-and-right vs unanswerable) and the shares at the threshold."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    conf = np.array([calibration.confidence(r["signals"]) if r["signals"] else 0.0
                     for r in rows])
    answerable = np.array([r["answerable"] for r in rows])
    right = np.array([r["right"] for r in rows])
    keep = right | ~answerable
    answered = conf >= calibration.threshold
    return {"auroc": round(float(roc_auc_score(right[keep], conf[keep])), 4),
            "auroc_right_vs_rest": round(float(roc_auc_score(right, conf)), 4),
            "unanswerable_abstained": round(float(np.mean(~answered[~answerable])), 4),
            "answerable_answered": round(float(np.mean(answered[answerable])), 4),
            "answered_right": round(float(right[answered].mean()) if answered.any() else 0, 4),
            "answerable_right": round(float(right[answerable].mean()), 4),
            "questions": len(rows), "unanswerable": int((~answerable).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA / "squad-open")
    parser.add_argument("--fit", type=int, default=160, help="SQuAD train questions to fit on")
    parser.add_argument("--test", type=int, default=100, help="SQuAD dev questions to test on")
    parser.add_argument("--mode", choices=("rag-sequence", "stuff"), default="rag-sequence")
    parser.add_argument("--scoring", choices=SCORINGS, default=DEFAULT_SCORING)
    parser.add_argument("--generator", default="smollm2")
    parser.add_argument("--prompt", choices=GROUNDED_PROMPT_STYLES, default=DEFAULT_GROUNDED_PROMPT,
                        help="grounded RAG-Sequence's prompt style (ragmix.generation.prompt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true",
                        help="do not write the calibration into ragmix's confidence.json")
    args = parser.parse_args()
    prompt_module.DEFAULT_GROUNDED_PROMPT = args.prompt  # read at each prompt's build

    from ragmix.generation import load_generator
    from ragmix.marginal.confidence import save_calibration

    folder = require_data(args.data)
    fit_items, test_items, deleted = question_sets(folder, args)
    generator = load_generator(args.generator)
    with deleted_collection(folder, deleted) as col:
        fit_rows = answer_all(col, generator, fit_items, args, "fit")
        calibration = fit(fit_rows)
        test_rows = answer_all(col, generator, test_items, args, "test")
    command = (f"bench/bench_abstention.py --fit {args.fit} --test {args.test} --mode "
               f"{args.mode} --scoring {args.scoring} --generator {args.generator} "
               f"--prompt {args.prompt}")
    calibration = type(calibration)(**{**calibration.__dict__, "fitted_on": (
        f"{args.fit} SQuAD train questions (half unanswerable), {command}")})
    if not args.no_save:
        save_calibration(calibration, generator.name, args.mode, args.scoring)
    row = {**score(test_rows, calibration), "threshold": calibration.threshold,
           "fit": score(fit_rows, calibration), "mode": args.mode, "scoring": args.scoring,
           "prompt": args.prompt,
           "generator": args.generator, "deleted_articles": len(deleted),
           "weights": dict(zip(calibration.features, map(lambda w: round(w, 3),
                                                         calibration.weights)))}
    print(json.dumps(row, indent=1))
    path = RESULTS / "grounded.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    kept = {k: v for k, v in previous.items() if k not in ("machine", "measured_at")}
    kept["abstention"] = row
    print(f"wrote {write_result('grounded.json', kept)}")


if __name__ == "__main__":
    main()
