"""What the ``ragmix train`` commands share: their training pairs and their progress bar."""

from __future__ import annotations

import random
from collections.abc import Callable

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.progress import TimeRemainingColumn


def one_source(beir_dir, squad_file) -> None:
    """Refuse anything but exactly one of ``--beir DIR`` and ``--squad FILE``."""
    if (beir_dir is None) == (squad_file is None):
        raise click.UsageError("give exactly one of --beir FOLDER or --squad FILE")


def training_set(err: Console, beir_dir, split: str, squad_file, limit: int | None, seed: int):
    """The pairs of ``--beir DIR`` (a qrels split) or ``--squad FILE`` (see
    :func:`one_source`), a seeded sample of ``limit`` queries where given."""
    from ragmix.training.pairs import TrainingSet, load_beir_pairs, load_squad_pairs

    one_source(beir_dir, squad_file)
    err.print("loading training data")
    data = load_beir_pairs(beir_dir, split) if beir_dir else load_squad_pairs(squad_file)
    if limit is not None and limit < len(data.pairs):
        data = TrainingSet(tuple(random.Random(seed).sample(data.pairs, limit)), data.corpus)
    return data


def training_bars(err: Console, *, temperature: Callable[[], float] | None = None,
                  tau_digits: int = 4) -> tuple[Progress, Callable[..., None]]:
    """A progress bar and the ``progress(event, **info)`` a trainer reports to; with
    ``temperature`` (the trainer's starting one) the bar also shows each step's."""
    fields = "loss {task.fields[loss]:.4f}"
    if temperature is not None:
        fields += f"  tau {{task.fields[tau]:.{tau_digits}f}}"
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn(fields), TimeElapsedColumn(), TimeRemainingColumn(), console=err)
    task = None

    def progress(event: str, **info) -> None:
        nonlocal task
        extra = {} if temperature is None else {
            "tau": temperature() if event == "start" else info.get("temperature")}
        if event == "stage":
            err.print(info["text"])
        elif event == "start":
            task = bars.add_task("training", total=info["total"], completed=info["done"],
                                 loss=float("nan"), **extra)
        elif event == "step" and task is not None:
            bars.update(task, advance=1, loss=info["loss"], **extra)

    return bars, progress
