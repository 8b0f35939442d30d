"""The rerankers bench_rerank.py names, and how it trains the ones it trains.

Every trained model leaves out the held-out queries that settings are chosen
on (SciFact: bench_training.py's seeded tenth of train; SQuAD: a seeded 1,000
train questions), and is saved under bench/.work/models/NAME. Training resumes
from its last checkpoint after a crash; a finished model is reused.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

from _common import ROOT

MODELS = ROOT / "bench" / ".work" / "models"
BENCH_TRAIN_FILE = "bench_rerank_train.json"  # written last: the model is finished
SQUAD_TRAIN_QUESTIONS = 2000  # seeded; about 125 steps of 16: what 2 cores train in ~30 min

# name -> (ragmix reranker, model folder or None, dataset it was trained on or None)
RERANKERS: dict[str, tuple[str, str | None, str | None]] = {
    "li": ("late-interaction", None, None),  # the packaged MiniLM, untrained for MaxSim
    "ql": ("query-likelihood", "smollm2", None),  # UPR, zero-shot
    **{f"ce-{data}-{loss}": ("cross-encoder", str(MODELS / f"ce-{data}-{loss}"), data)
       for data in ("scifact", "squad") for loss in ("bce", "listwise")},
    **{f"li-{data}": ("late-interaction", str(MODELS / f"li-{data}"), data)
       for data in ("scifact", "squad")},
}


class Memo:
    """A scorer that remembers (query, passage) scores, so pipelines that differ only in
    the fusion weight score each pair once; ``computed`` counts the pairs it scored."""

    def __init__(self, scorer) -> None:
        self.scorer, self.name, self.seen, self.computed = scorer, scorer.name, {}, 0

    def score(self, query, texts):
        import numpy as np

        missing = list(dict.fromkeys(t for t in texts if (query, t) not in self.seen))
        if missing:
            for text, value in zip(missing, self.scorer.score(query, missing)):
                self.seen[(query, text)] = float(value)
            self.computed += len(missing)
        return np.array([self.seen[(query, t)] for t in texts], dtype=np.float64)


def bench_reranker(name: str, kind: str | None = None) -> tuple[str, str | None, str | None]:
    """``RERANKERS[name]``, checked: of ``kind`` when one is given, and trained if trained here;
    exits naming the choices, or how to train it."""
    if name not in RERANKERS or (kind and RERANKERS[name][0] != kind):
        choices = [n for n, v in RERANKERS.items() if kind in (None, v[0])]
        raise SystemExit(f"unknown {kind or 'reranker'} {name!r}: choose from "
                         f"{', '.join(choices)}")
    found, model, trained_on = RERANKERS[name]
    if model is not None and trained_on is not None and not Path(model).is_dir():
        raise SystemExit(f"{name} is not trained yet: bench/bench_rerank.py train {name}")
    return found, model, trained_on


def load_bench_reranker(name: str, collection_dir: Path):
    """(memoised scorer, dataset it was trained on or None) for a bench reranker name.

    Late interaction keeps its token vectors in the collection, as ``ragmix rerank-store``
    does (filled at the first use of each passage).
    """
    from ragmix.rerank import load_scorer, token_store_dir

    kind, model, trained_on = bench_reranker(name)
    store = (token_store_dir(collection_dir, model, dtype="auto")
             if kind == "late-interaction" else None)
    return Memo(load_scorer(kind, model=model, dtype="auto", store=store)), trained_on


def training_set(dataset: str, data_root: Path, scifact_heldout: Callable, squad_heldout: Callable):
    """The pairs a bench model trains on: the train split less the held-out queries."""
    from ragmix.training.pairs import TrainingSet, load_beir_pairs, load_squad_pairs

    if dataset == "scifact":
        full, held = load_beir_pairs(data_root / "scifact", "train"), scifact_heldout(
            data_root / "scifact")
        return TrainingSet(tuple(p for p in full.pairs if p.query_id not in held), full.corpus)
    train_file = data_root / "squad-open" / "train-v1.1.json.gz"
    full, held = load_squad_pairs(train_file), squad_heldout(train_file)
    pool = sorted((p for p in full.pairs if p.query_id not in held), key=lambda p: p.query_id)
    pairs = random.Random(1).sample(pool, SQUAD_TRAIN_QUESTIONS)
    return TrainingSet(tuple(pairs), full.corpus)


def _printer(event: str, **info) -> None:
    if event == "stage":
        print(f"  {info['text']}", flush=True)
    elif event == "step" and info["step"] % 5 == 0:
        print(f"  step {info['step']} loss {info['loss']:.4f}", flush=True)


def train_model(name: str, data_root: Path, scifact_heldout: Callable, squad_heldout: Callable):
    """Train the bench model ``name`` (``ce-DATA-LOSS`` or ``li-DATA``) into MODELS/NAME."""
    if name not in RERANKERS or RERANKERS[name][2] is None:
        trainable = [n for n, (_, _, on) in RERANKERS.items() if on]
        raise SystemExit(f"{name!r} is not trained here: choose from {', '.join(trainable)}")
    kind, folder, dataset = RERANKERS[name]
    out = Path(folder)
    if (out / BENCH_TRAIN_FILE).exists():
        print(f"== {name}: reusing the model trained in {out}", flush=True)
        record_training(name, out)
        return
    data = training_set(dataset, data_root, scifact_heldout, squad_heldout)
    print(f"== training {name}: {len(data.pairs)} queries -> {out}", flush=True)
    began = time.perf_counter()
    if kind == "cross-encoder":
        from ragmix.training.reranker import RerankerTrainer
        from ragmix.training.reranker_config import RerankerTrainConfig

        from ragmix.training.reranker import MINED_FILE

        # two passes: one epoch of SciFact is 46 steps, too few for the new head
        config = RerankerTrainConfig(loss=name.rsplit("-", 1)[1], epochs=2, dtype="auto")
        for sibling in MODELS.glob(f"ce-{dataset}-*/{MINED_FILE}"):  # the other loss's mining:
            if not (out / MINED_FILE).exists():  # reused only if its mining key matches
                out.mkdir(parents=True, exist_ok=True)
                (out / MINED_FILE).write_bytes(sibling.read_bytes())
        report = RerankerTrainer("minilm", data, config).train(out, progress=_printer)
    else:
        from ragmix.training.late_interaction import late_interaction_trainer
        from ragmix.training.retriever_config import RetrieverTrainConfig

        config = RetrieverTrainConfig(epochs=1, negatives=("bm25",), dtype="auto")
        report = late_interaction_trainer("minilm", data, config).train(out, progress=_printer)
    seconds = round(time.perf_counter() - began, 1)
    (out / BENCH_TRAIN_FILE).write_text(json.dumps(
        {"name": name, "queries": len(data.pairs), "seconds": seconds,
         "steps": getattr(report, "steps", None)}, indent=2) + "\n")
    print(f"trained {name} in {seconds:.0f} s", flush=True)
    record_training(name, out)


def record_training(name: str, out: Path) -> None:
    """Merge a trained model's summary into rerank.json under "trained": its time, steps,
    dtype and the loss every 5 steps, from the report the ragmix trainer saved beside it."""
    from _common import RESULTS, write_result

    from ragmix.rerank.cross_encoder import TRAINING_REPORT
    from ragmix.training.retriever import TRAINING_LOG

    bench = json.loads((out / BENCH_TRAIN_FILE).read_text())
    report_file = out / (TRAINING_REPORT if RERANKERS[name][0] == "cross-encoder"
                         else TRAINING_LOG)
    report = json.loads(report_file.read_text())
    steps = report.get("steps") or bench["steps"]
    row = {"queries": bench["queries"], "seconds": bench["seconds"], "steps": steps,
           "seconds_per_step": round(bench["seconds"] / steps, 1) if steps else None,
           "dtype": report["config"].get("dtype"), "loss": report["config"].get("loss"),
           "loss_by_step": {str(e["step"]): round(e["loss"], 4) for e in report["log"]
                            if e["step"] == 1 or e["step"] % 5 == 0}}
    path = RESULTS / "rerank.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.setdefault("trained", {})[name] = row
    write_result("rerank.json", results)
    print(f"recorded {name}'s training in {path}", flush=True)
