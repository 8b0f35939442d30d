"""The one thread that owns the generator: every call into it runs there, in order.

Generators are not thread-safe (a model's caches, a tokenizer's state), so
requests hand the worker a task and wait on its future. The loop takes the
next *batch* of tasks (today always one); continuous batching will take every
ask waiting at that moment and decode them in lockstep, without changing how
requests submit.

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
from dataclasses import dataclass, field
from typing import Any

from ragmix.errors import RagmixError
from ragmix.generation.base import Generator

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """The request that asked went away (a closed stream); its generation stops."""


class GeneratorUnavailable(RagmixError):
    """The server's generator could not be loaded (HTTP 503): a setup problem, not the request's."""


@dataclass(frozen=True)
class Task:
    """A call to make with the generator, and where its result goes."""

    run: Callable[[Generator], Any]
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)


class GeneratorWorker:
    """Loads the generator on its own thread at the first task, then runs tasks one by one."""

    def __init__(self, load: Callable[[], Generator]) -> None:
        self._load = load
        self._generator: Generator | None = None
        self._queue: queue.Queue[Task | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="ragmix-generator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, run: Callable[[Generator], Any], *,
               cancelled: threading.Event | None = None) -> Future:
        """Queue ``run(generator)``; a set ``cancelled`` skips it if it has not started."""
        task = Task(run, cancelled=cancelled or threading.Event())
        self._queue.put(task)
        return task.future

    def generator(self) -> Generator:
        """The generator, loaded on the worker thread if it is not yet.

        Other threads may read its attributes (its type, name, context size) to
        set an answerer up; only the worker thread calls its methods.
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
        """Tasks waiting for the worker (not counting the one it is running)."""
        return self._queue.qsize()

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            for task in batch:
                self._run(task)

    def _next_batch(self) -> list[Task] | None:
        """The tasks to run next, or None to stop. One at a time until decoding batches."""
        task = self._queue.get()
        return None if task is None else [task]

    def _run(self, task: Task) -> None:
        if not task.future.set_running_or_notify_cancel():
            return
        if task.cancelled.is_set():
            task.future.set_exception(Cancelled("the client went away before its turn"))
            return
        try:
            if self._generator is None:
                self._generator = self._load()
            task.future.set_result(task.run(self._generator))
        except Exception as exc:  # handed to the request that asked, which reports it
            task.future.set_exception(exc)

    def close(self, *, timeout: float = 10.0) -> None:
        """Stop after the task running now; tasks still queued fail with Cancelled."""
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
