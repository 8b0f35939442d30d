"""The eval plots: curve points from metric names, and PNGs that show what they should."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from ragmix.evaluation.plots import curve_points, plot_latency_histogram, plot_recall_curves  # noqa: E402


def test_curve_points_pick_one_metric_family_in_k_order() -> None:
    metrics = {"recall@100": 0.95, "recall@5": 0.8, "ndcg@10": 0.7, "answer_recall@5": 0.6,
               "recall": 1.0, "mrr@10": 0.5}
    assert curve_points(metrics, "recall") == [(5, 0.8), (100, 0.95)]
    assert curve_points(metrics, "answer_recall") == [(5, 0.6)]
    assert curve_points(metrics, "map") == []


def _png_pixels(path: Path) -> np.ndarray:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(path)


def test_recall_curves_draw_one_coloured_line_per_mode(tmp_path: Path) -> None:
    two = plot_recall_curves({"bm25": {"recall@1": 0.2, "recall@10": 0.9},
                              "dense": {"recall@1": 0.4, "recall@10": 0.8}}, tmp_path / "r2.png")
    none = plot_recall_curves({"bm25": {"ndcg@10": 0.9}}, tmp_path / "r0.png")
    coloured = [np.sum(np.ptp(_png_pixels(p)[..., :3], axis=-1) > 0.3) for p in (two, none)]
    assert coloured[0] > coloured[1] + 100  # the lines add coloured pixels to the bare axes
    assert not list(tmp_path.glob(".*"))  # no temp files left behind


def test_latency_histogram_handles_modes_and_empty_input(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = plot_latency_histogram({"bm25": rng.uniform(0.001, 0.002, 50),
                                   "dense": rng.uniform(0.02, 0.05, 50), "none": []},
                                  tmp_path / "lat.png")
    assert _png_pixels(path).shape[0] > 100
    assert plot_latency_histogram({}, tmp_path / "empty.png").exists()
