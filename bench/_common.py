"""Helpers shared by the bench scripts: data paths, timing, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("RAGMIX_DATA", ROOT.parent / "shared" / "data"))
RESULTS = ROOT / "bench" / "results"


def require_data(path: Path) -> Path:
    if not path.exists():
        raise SystemExit(f"benchmark data not found at {path}; pass --data or set RAGMIX_DATA")
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(fn: Callable[[], object]) -> float:
    """Milliseconds one call takes."""
    began = time.perf_counter()
    fn()
    return (time.perf_counter() - began) * 1000


def machine() -> dict[str, object]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_result(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    data = {**data, "machine": machine(), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def median(values: list[float]) -> float:
    return statistics.median(values)
