"""PNG plots for evaluation reports: recall@k curves per mode, latency histograms.

Pure inputs (mode -> numbers), so the eval commands and the bench scripts share
them. Needs ``ragmix[plots]`` (matplotlib); drawn off-screen (Agg backend).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from ragmix._extras import require

RECALL_PNG = "recall_at_k.png"
LATENCY_PNG = "latency.png"
_AT_K = re.compile(r"^(?P<name>.+)@(?P<k>\d+)$")


def curve_points(metrics: Mapping[str, float], prefix: str) -> list[tuple[int, float]]:
    """``(k, value)`` pairs of the metrics named ``PREFIX@k``, by k.

    >>> curve_points({"recall@10": 0.9, "recall@1": 0.5, "ndcg@10": 0.7}, "recall")
    [(1, 0.5), (10, 0.9)]
    """
    points = []
    for name, value in metrics.items():
        match = _AT_K.match(name)
        if match and match["name"] == prefix:
            points.append((int(match["k"]), float(value)))
    return sorted(points)


def _pyplot():
    matplotlib = require("matplotlib", "plots")
    matplotlib.use("Agg", force=True)
    return require("matplotlib.pyplot", "plots")


def _save(fig, path: str | Path) -> Path:
    """Write the figure atomically (temp file, then rename) and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        fig.clf()
        _pyplot().close(fig)
    return path


def plot_recall_curves(
    metrics_by_mode: Mapping[str, Mapping[str, float]], path: str | Path, *,
    prefix: str = "recall", title: str = "Recall@k", ylabel: str = "recall@k",
) -> Path:
    """One line per mode through its ``PREFIX@k`` metrics, k on a log axis; returns ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = 0
    for mode, metrics in metrics_by_mode.items():
        points = curve_points(metrics, prefix)
        if points:
            ks, values = zip(*points)
            ax.plot(ks, values, marker="o", label=mode)
            drawn += 1
    ax.set_xscale("log")
    ax.set_xlabel("k (passages retrieved)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    if drawn:
        ax.legend()
    return _save(fig, path)


def plot_latency_histogram(
    seconds_by_mode: Mapping[str, Iterable[float]], path: str | Path, *,
    title: str = "Latency per query",
) -> Path:
    """Overlaid histograms of each mode's latencies (given in seconds, drawn in ms)."""
    np = require("numpy", "core")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    data = {mode: np.asarray(list(values), dtype=float) * 1000
            for mode, values in seconds_by_mode.items()}
    data = {mode: ms for mode, ms in data.items() if ms.size}
    if data:
        everything = np.concatenate(list(data.values()))
        low, high = max(everything.min(), 1e-3), max(everything.max(), 2e-3)
        bins = np.geomspace(low, high * 1.0001, 40)  # latencies span decades: log bins
        for mode, ms in data.items():
            ax.hist(ms, bins=bins, alpha=0.5,
                    label=f"{mode} (p50 {np.median(ms):.1f} ms)")
        ax.set_xscale("log")
        ax.legend()
    ax.set_xlabel("milliseconds")
    ax.set_ylabel("queries")
    ax.set_title(title)
    return _save(fig, path)


def report_plots(
    out_dir: str | Path, metrics_by_mode: Mapping[str, Mapping[str, float]],
    seconds_by_mode: Mapping[str, Iterable[float]], *, prefix: str, what: str,
) -> str:
    """Draw OUT/recall_at_k.png and OUT/latency.png; return the report's Markdown for them.

    ``prefix`` names the curves' metrics (``recall`` or ``answer_recall``), ``what`` the
    unit one latency is for ("query (search only)", "question"). Raises
    :class:`~ragmix.errors.MissingExtraError` without matplotlib.
    """
    label = "answer recall@k" if prefix == "answer_recall" else "recall@k"
    plot_recall_curves(metrics_by_mode, Path(out_dir) / RECALL_PNG, prefix=prefix,
                       title=label, ylabel=label)
    plot_latency_histogram(seconds_by_mode, Path(out_dir) / LATENCY_PNG,
                           title=f"Latency per {what}")
    return f"## Plots\n\n![{label}]({RECALL_PNG})\n\n![latency]({LATENCY_PNG})\n"


def report_plots_or_reason(
    out_dir: str | Path, metrics_by_mode: Mapping[str, Mapping[str, float]],
    seconds_by_mode: Mapping[str, Iterable[float]], *, prefix: str, what: str,
) -> tuple[str, str | None]:
    """:func:`report_plots`, or ("", why not) without matplotlib: an evaluation's numbers
    matter more than its pictures, so a report is written either way."""
    from ragmix.errors import MissingExtraError

    try:
        return report_plots(out_dir, metrics_by_mode, seconds_by_mode, prefix=prefix,
                            what=what), None
    except MissingExtraError as exc:
        return "", str(exc)
