"""Checkpoints that resume exactly: trainable weights, optimiser, schedule, random states.

Each checkpoint is one folder ``step-N``: written under a temporary name,
flushed to disk, then renamed into place, so a crash mid-save leaves the
previous one intact. The last ``KEEP`` are kept; if the newest cannot be read
(a disk that lied about a flush), resuming falls back to the one before.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ragmix._extras import require
from ragmix.errors import BadInputError

PREFIX = "step-"
KEEP = 2


def trainable_state(module: Any) -> dict[str, Any]:
    """The parameters that train (LoRA adapters, or everything), detached copies."""
    return {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rng_state() -> dict[str, Any]:
    torch = require("torch", "models")
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_checkpoint(folder: Path, step: int, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, state dicts, plain values) plus the RNG states as step-N."""
    torch = require("torch", "models")
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{step}"
    temp = folder / f".{PREFIX}{step}.partial"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    torch.save({**state, "step": step, "rng": _rng_state()}, temp / "state.pt")
    _fsync(temp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    temp.rename(final)
    _fsync(folder)
    for old in _checkpoints(folder)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    steps = [(int(p.name[len(PREFIX):]), p) for p in folder.glob(f"{PREFIX}*")
             if p.name[len(PREFIX):].isdigit() and (p / "state.pt").is_file()]
    return [p for _, p in sorted(steps)]


def latest_checkpoint(folder: Path) -> Path | None:
    found = _checkpoints(folder)
    return found[-1] if found else None


def load_latest(folder: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint's state (RNG states restored), or None if there is none."""
    torch = require("torch", "models")
    for path in reversed(_checkpoints(folder)):
        try:
            state = torch.load(path / "state.pt", weights_only=False)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):  # torn: the one before
            continue
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        state["path"] = path
        return state
    return None


def resume_state(folder: Path, resume: bool, config: dict[str, Any],
                 run: dict[str, str], *, ignore: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The checkpoint to continue from, or None to start fresh.

    Without ``resume`` the old checkpoints are deleted. A checkpoint made with
    another ``config`` or ``run`` (what the data, model and index must match)
    is refused, naming what differs. Config keys in ``ignore`` (settings that
    do not change the result, such as how often to checkpoint) may differ.
    """
    if not resume:
        shutil.rmtree(folder, ignore_errors=True)
        return None
    state = load_latest(folder)

    def kept(c: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in c.items() if key not in ignore}

    if state is not None and (kept(state["config"]) != kept(config) or state["run"] != run):
        changed = [key for key in run if state["run"].get(key) != run[key]]
        raise BadInputError(
            f"checkpoint {str(state['path'])!r} was made with other settings "
            f"({', '.join(changed) or 'the training options'} differ); use the same "
            "options, --no-resume to start over, or a new output folder")
    return state
