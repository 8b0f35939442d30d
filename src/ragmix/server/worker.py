"""The one thread that owns the generator, and batches the asks in flight into shared steps.

Generators are not thread-safe (a model's caches, a tokenizer's state), so
requests hand the worker a task and wait on its future. Up to ``max_batch``
tasks are in flight at once, each on a lane of its own that the worker runs
one at a time (:mod:`ragmix.server.batching`): a task runs until its decoder
needs the next token's log-probabilities, and once every task in flight waits
so, one forward pass of the model advances all their rows. A task that
arrives joins at the next step, one that ends leaves, one whose client went
away (its ``cancelled`` set) gets :class:`Cancelled` at its next step, and an
error fails only the task that raised it.

>>> from ragmix.testing import ScriptedGenerator
>>> worker = GeneratorWorker(lambda: ScriptedGenerator("42"))
>>> worker.start()
>>> worker.submit(lambda gen: gen.generate("What is six times seven?")).result(timeout=5)
'42'
>>> worker.close()
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ragmix._extras import require
from ragmix.errors import BadInputError, RagmixError
from ragmix.generation.base import Generator
from ragmix.generation.decode_state import advance_together
from ragmix.server.batching import Cancelled, Lane, Task, batched

__all__ = ["Cancelled", "GeneratorUnavailable", "GeneratorWorker", "StepCounts", "Task"]

log = logging.getLogger(__name__)
# Asks decoding together at most; more wait their turn. 16 rows of grounded RAG-Sequence
# each (4 beams x 4 passages) makes a step of up to 256 rows.
MAX_BATCH = 16


class GeneratorUnavailable(RagmixError):
    """The server's generator could not be loaded (HTTP 503): a setup problem, not the request's."""


@dataclass
class StepCounts:
    """How the worker has stepped so far: shared steps, and how many tasks and rows they held."""

    steps: int = 0
    tasks: int = 0  # summed over the steps: tasks / steps is the mean batch
    most_tasks: int = 0
    most_rows: int = 0


class GeneratorWorker:
    """Loads the generator on its own thread at the first task, then runs the tasks batched."""

    def __init__(self, load: Callable[[], Generator], *, max_batch: int = MAX_BATCH) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise BadInputError(f"max_batch must be an integer greater than 0, got {max_batch!r}")
        self._load = load
        self.max_batch = max_batch
        self.counts = StepCounts()
        self._generator: Any = None  # what tasks get: the loaded generator, batched()
        self._queue: queue.Queue[Task | None] = queue.Queue()
        self._lanes: list[Lane] = []  # idle ones, for the next tasks
        self._made = 0
        self._thread = threading.Thread(target=self._loop, name="ragmix-generator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, run: Callable[[Generator], Any], *,
               cancelled: threading.Event | None = None) -> Future:
        """Queue ``run(generator)``; a set ``cancelled`` skips it if it has not started, and
        stops it at its next decoding step if it has."""
        task = Task(run, cancelled=cancelled or threading.Event())
        self._queue.put(task)
        return task.future

    def generator(self) -> Generator:
        """The generator tasks get, loaded on the worker thread if it is not yet.

        Other threads may read its attributes (its type, name, context size) to
        set an answerer up; only tasks call its methods.
        """
        if self._generator is None:
            try:
                return self.submit(lambda gen: gen).result()
            except Exception as exc:  # only the load can fail: the task itself cannot
                raise GeneratorUnavailable(
                    f"the generator could not be loaded ({type(exc).__name__}: {exc}); fix the "
                    "server's --generator and restart it") from exc
        return self._generator

    def pending(self) -> int:
        """Tasks waiting for the worker (not counting those in flight)."""
        return self._queue.qsize()

    def _loop(self) -> None:
        paused: list[Lane] = []
        stopping = False
        while paused or not stopping:
            room = self.max_batch - len(paused)
            for task in self._take(wait=not paused, room=room):
                if task is None:
                    stopping = True
                    break
                lane = self._start(task)
                if lane is not None:
                    paused.append(lane)
            if paused:
                paused = self._step(paused)
        for lane in self._lanes:
            lane.stop()

    def _take(self, *, wait: bool, room: int) -> list[Task | None]:
        """The tasks queued now, at most ``room`` (waiting for one if ``wait``); None: stop."""
        taken: list[Task | None] = []
        try:
            while len(taken) < room and (not taken or taken[-1] is not None):
                taken.append(self._queue.get() if wait and not taken
                             else self._queue.get_nowait())
        except queue.Empty:
            pass
        return taken

    def _start(self, task: Task) -> Lane | None:
        """Run ``task`` on a lane until it first pauses (the lane) or ends (None)."""
        if not task.future.set_running_or_notify_cancel():
            return None
        if task.cancelled.is_set():
            task.future.set_exception(Cancelled("the client went away before its turn"))
            return None
        try:
            if self._generator is None:
                self._generator = batched(self._load())
        except Exception as exc:  # handed to the request that asked, which reports it
            task.future.set_exception(exc)
            return None
        lane = self._lane()
        if lane.run(task, self._generator):
            return lane
        self._lanes.append(lane)
        return None

    def _lane(self) -> Lane:
        if self._lanes:
            return self._lanes.pop()
        self._made += 1
        return Lane(f"ragmix-generator-lane-{self._made}")

    def _step(self, paused: list[Lane]) -> list[Lane]:
        """Advance every paused task's rows in one forward pass, then let each run on to its
        next step: the lanes paused again (the others are idle for new tasks)."""
        going = [lane for lane in paused if not lane.task.cancelled.is_set()]
        errors = self._advance(going)
        still = []
        for lane in paused:
            error = errors.get(id(lane))
            if lane.task.cancelled.is_set():
                error = Cancelled("the client went away")
            if lane.resume(error):
                still.append(lane)
            else:
                self._lanes.append(lane)
        return still

    def _advance(self, lanes: list[Lane]) -> dict[int, Exception]:
        """One shared step of ``lanes``; the errors, by lane id, if one lane's rows broke it."""
        if not lanes:
            return {}
        torch = require("torch", "models")
        steps = [lane.step for lane in lanes]
        try:
            with torch.inference_mode():
                advance_together([s.state for s in steps], [s.tokens for s in steps])
        except Exception:  # which task's rows broke it? Step each alone: only that one fails
            log.debug("a shared step failed; stepping its %d tasks alone", len(lanes),
                      exc_info=True)
            return self._advance_alone(lanes)
        counts = self.counts
        counts.steps += 1
        counts.tasks += len(lanes)
        counts.most_tasks = max(counts.most_tasks, len(lanes))
        counts.most_rows = max(counts.most_rows, sum(s.state.rows for s in steps))
        return {}

    @staticmethod
    def _advance_alone(lanes: list[Lane]) -> dict[int, Exception]:
        torch = require("torch", "models")
        errors: dict[int, Exception] = {}
        for lane in lanes:
            try:
                with torch.inference_mode():
                    lane.step.state.advance(lane.step.tokens)
            except Exception as exc:  # handed to the task, where its decoder advanced
                errors[id(lane)] = exc
        return errors

    def close(self, *, timeout: float = 10.0) -> None:
        """Stop once the tasks in flight end; tasks still queued fail with Cancelled."""
        while True:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                break
            if task is not None and task.future.set_running_or_notify_cancel():
                task.future.set_exception(Cancelled("the server is stopping"))
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
