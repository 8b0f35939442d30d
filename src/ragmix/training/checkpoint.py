"""Checkpoints that resume exactly: trainable weights, optimiser, schedule, random states.

Each checkpoint is one folder ``step-N`` written beside under a temporary name
and renamed into place, so a crash mid-save leaves the previous one intact.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ragmix._extras import require

PREFIX = "step-"


def trainable_state(module: Any) -> dict[str, Any]:
    """The parameters that train (LoRA adapters, or everything), detached copies."""
    return {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}


def save_checkpoint(folder: Path, step: int, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, state dicts, plain values) plus the RNG states as step-N."""
    torch = require("torch", "models")
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{PREFIX}{step}"
    temp = folder / f".{PREFIX}{step}.partial"
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    rng = {"python": random.getstate(), "numpy": np.random.get_state(),
           "torch": torch.get_rng_state()}
    torch.save({**state, "step": step, "rng": rng}, temp / "state.pt")
    shutil.rmtree(final, ignore_errors=True)
    temp.rename(final)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    steps = [(int(p.name[len(PREFIX):]), p) for p in folder.glob(f"{PREFIX}*")
             if p.name[len(PREFIX):].isdigit() and (p / "state.pt").is_file()]
    return max(steps)[1] if steps else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The saved state; the RNG states are restored as a side effect."""
    torch = require("torch", "models")
    state = torch.load(path / "state.pt", weights_only=False)
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    return state
