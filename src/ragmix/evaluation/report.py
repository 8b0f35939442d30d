"""Evaluation results as files: one JSON document and one Markdown report per run."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

from ragmix.evaluation.retrieval_metrics import RetrievalReport, latency_summary
from ragmix.evaluation.run_qa import QAReport

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
# The columns BEIR and MTEB papers report, plus the recall depths a reader needs
# to choose k for generation.
RETRIEVAL_COLUMNS = ("ndcg@10", "mrr@10", "recall@1", "recall@5", "recall@10", "recall@20",
                     "recall@100")
_LABELS = {"ndcg": "nDCG", "mrr": "MRR", "recall": "R"}


def column_label(metric: str) -> str:
    """``"ndcg@10"`` -> ``"nDCG@10"``, ``"recall@5"`` -> ``"R@5"``."""
    name, _, k = metric.partition("@")
    return f"{_LABELS.get(name, name)}@{k}" if k else metric


def run_info() -> dict[str, str]:
    """When and where a run happened, for the record."""
    from ragmix import __version__

    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "ragmix": __version__, "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"}


def collection_meta(path: str | Path, info: Mapping) -> dict:
    """What a report records of the collection: its path as given, and from
    :meth:`~ragmix.store.Collection.info` what built it and how big it is."""
    return {"path": str(path), **{key: info[key] for key in
                                  ("encoder", "documents", "chunks", "chunker", "index")}}


def retrieval_results(reports: Mapping[str, RetrievalReport], meta: Mapping) -> dict:
    """The JSON document of a retrieval run: its settings and every mode's report."""
    return {"task": "retrieval", **meta,
            "modes": {mode: report.to_dict() for mode, report in reports.items()}}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def retrieval_markdown(reports: Mapping[str, RetrievalReport], meta: Mapping) -> str:
    """A Markdown report: settings, then one row of metrics per mode."""
    columns = [c for c in RETRIEVAL_COLUMNS
               if all(c in r.metrics for r in reports.values())]
    rows = []
    for mode, report in reports.items():
        latency = latency_summary(report.latency_s.values()) if report.latency_s else None
        rows.append([mode, *(f"{report.metrics[c]:.4f}" for c in columns),
                     f"{latency['mean']:.1f}" if latency else "-",
                     f"{latency['p95']:.1f}" if latency else "-"])
    header = ["mode", *map(column_label, columns), "ms/query", "p95 ms"]
    n = next(iter(reports.values())).n_queries if reports else 0
    return "\n".join([
        "# ragmix retrieval evaluation", "",
        *_table(header, rows), "",
        f"{n} judged queries. Metrics as trec_eval computes them (pytrec_eval, BEIR): "
        "ties broken by document id, a document ranked at its best chunk, a judged query "
        "with no result scores 0.", "",
        "## Settings", "", *_settings(meta), "",
    ])


def write_report(out_dir: str | Path, results: Mapping, markdown: str) -> tuple[Path, Path]:
    """Write ``results.json`` and ``report.md`` into ``out_dir``, each atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / RESULTS_FILE, out / REPORT_FILE
    for path, text in zip(paths, (json.dumps(results, indent=2) + "\n", markdown)):
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    return paths


def qa_results(reports: Mapping[str, QAReport], meta: Mapping) -> dict:
    """The JSON document of a QA run: its settings and every mode's report."""
    return {"task": "qa", **meta, "modes": {mode: r.to_dict() for mode, r in reports.items()}}


def qa_markdown(reports: Mapping[str, QAReport], meta: Mapping) -> str:
    """A Markdown report: one row of answer metrics per mode, then the settings."""
    names = list(dict.fromkeys(n for r in reports.values() for n in r.metrics))
    rows = [[mode, *(f"{r.metrics[n]:.4f}" if n in r.metrics else "-" for n in names)]
            for mode, r in reports.items()]
    n = len(next(iter(reports.values())).results) if reports else 0
    return "\n".join([
        "# ragmix QA evaluation", "", *_table(["mode", *names], rows), "",
        f"{n} questions. EM and F1 with the official SQuAD normalisation, the best gold "
        "answer counting; contains: a gold answer occurs (whole tokens, normalised) in the "
        "answer; answer_recall@k: a gold answer occurs in one of the top k passages.", "",
        "## Settings", "", *_settings(meta), "",
    ])


def _settings(meta: Mapping) -> list[str]:
    lines = [f"- {key}: `{value}`" for key, value in meta.items() if not isinstance(value, Mapping)]
    for key, value in meta.items():
        if isinstance(value, Mapping):
            lines += [f"- {key}.{k}: `{v}`" for k, v in value.items()]
    return lines
