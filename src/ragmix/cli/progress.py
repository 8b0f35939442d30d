"""Rich progress bars that implement ragmix's ``Progress`` protocol."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RichProgress:
    """One bar per stage (reading, embedding, updating indexes), drawn on stderr."""

    def __init__(self, console: Console) -> None:
        self._bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._last: str | None = None

    def __enter__(self) -> RichProgress:
        self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish_last()
        self._bars.stop()

    def _finish_last(self) -> None:
        if self._last is not None:
            task = self._tasks[self._last]
            total = self._bars.tasks[task].completed
            self._bars.update(task, total=max(total, 1), completed=max(total, 1))

    def start(self, stage: str, total: int | None) -> None:
        self._finish_last()
        self._tasks[stage] = self._bars.add_task(stage, total=total)
        self._last = stage

    def advance(self, stage: str, n: int = 1) -> None:
        self._bars.advance(self._tasks[stage], n)
