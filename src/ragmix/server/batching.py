"""Continuous batching: the asks in flight decode in the same forward passes of the model.

Each task runs on a lane, a thread of its own, but as a coroutine: the worker
resumes one lane at a time and waits until its task pauses or ends, so the
generator is still used by one thread at a time. A task pauses where its
decoder advances (:meth:`SteppedDecodeState.advance`); once every task in
flight has paused or ended, the worker advances all their rows in one forward
pass (:func:`~ragmix.generation.decode_state.advance_together`) and resumes
them in turn. So a task that arrives joins at the next step boundary, one that
ends leaves, and each streams its own tokens from its own lane, in order.

Every decoder built on :meth:`start_decoding` pauses this way, whatever the
mode: grounded and free RAG-Sequence (beam searches), RAG-Token, and "stuff"
(``generate``'s greedy loop). What a task does between steps (retrieval,
reading its prompts, teacher-forced scoring) runs in its turn, unbatched.

>>> lane = Lane("ragmix-generator-lane-1")
>>> lane.run(Task(lambda gen: gen * 2), 21)  # the task ended without pausing
False
>>> lane.finished.result()
42
>>> lane.stop()
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ragmix.generation.decode_state import DecodeState
from ragmix.generation.hf_decoding import generate_text

if TYPE_CHECKING:
    from torch import Tensor

    from ragmix.generation.hf import HFGenerator

_here = threading.local()  # .lane: the lane this thread is, on a lane's thread
_STOP = object()


class Cancelled(Exception):
    """The request that asked went away (a closed stream); its generation stops."""


@dataclass(frozen=True)
class Task:
    """A call to make with the generator, and where its result goes."""

    run: Callable[[Any], Any]
    future: Future = field(default_factory=Future)
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Step:
    """Where a paused task waits: its decoder's rows, to advance by one token each."""

    state: DecodeState
    tokens: Tensor  # (N,): one token per row of ``state``


class Lane:
    """A thread that runs tasks as coroutines, one after another: the worker drives it.

    :meth:`run` and :meth:`resume` return True when the task paused at a step
    (``step``), False when it ended (``finished`` holds its future).
    """

    def __init__(self, name: str) -> None:
        self.step: Step | None = None
        self.finished: Future | None = None
        self.task: Task | None = None
        self._to_lane: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._to_worker: queue.SimpleQueue[Step | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def run(self, task: Task, generator: Any) -> bool:
        """Start ``task.run(generator)``; True once it pauses, False once it ends."""
        self.task, self.finished = task, None
        self._to_lane.put((task, generator))
        return self._wait()

    def resume(self, error: BaseException | None = None) -> bool:
        """Go on from the step (raising ``error`` there, if given); True once it pauses again."""
        self._to_lane.put(error)
        return self._wait()

    def stop(self) -> None:
        self._to_lane.put(_STOP)

    def _wait(self) -> bool:
        self.step = self._to_worker.get()
        if self.step is None:
            self.finished, self.task = self.task.future, None
        return self.step is not None

    def pause(self, step: Step) -> None:
        """On the lane's thread: hand ``step`` to the worker and wait until it was taken."""
        self._to_worker.put(step)
        error = self._to_lane.get()
        if error is not None:
            raise error

    def _main(self) -> None:
        _here.lane = self
        while (job := self._to_lane.get()) is not _STOP:
            task, generator = job
            try:
                task.future.set_result(task.run(generator))
            except Exception as exc:  # handed to the request that asked, which reports it
                task.future.set_exception(exc)
            finally:
                self._to_worker.put(None)


class SteppedDecodeState(DecodeState):
    """A :class:`DecodeState` that, on a lane, advances with the other lanes' rows.

    Off a lane (called from any other thread) it advances on its own.
    """

    def advance(self, tokens: Tensor) -> Tensor:
        lane = getattr(_here, "lane", None)
        if lane is None:
            return super().advance(tokens)
        lane.pause(Step(self, tokens))
        return self.next_lp


class BatchedGenerator:
    """An :class:`~ragmix.generation.hf.HFGenerator` whose decoders advance in shared steps.

    It is the generator for everything else: every attribute but
    ``start_decoding`` and ``generate`` is the wrapped one's (``inner``), so it
    passes the same protocol checks, has the same name (calibrations) and
    gives the same numbers.
    """

    def __init__(self, inner: HFGenerator) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:  # tokenizer, model, pad_id, decoder_prefix...
        return getattr(self.inner, name)

    # The protocols' members, spelled out: Python 3.12 checks protocols without __getattr__.
    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def end_token_id(self) -> int | None:
        return self.inner.end_token_id

    @property
    def stop_token_ids(self) -> frozenset[int]:
        return self.inner.stop_token_ids

    @property
    def max_context_tokens(self) -> int | None:
        return self.inner.max_context_tokens

    def count_tokens(self, prompt: str) -> int:
        return self.inner.count_tokens(prompt)

    def encode_prompt(self, prompt: str) -> list[int]:
        return self.inner.encode_prompt(prompt)

    def encode_answer(self, text: str) -> list[int]:
        return self.inner.encode_answer(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.inner.decode(ids)

    def token_logprobs(self, prompts: Sequence[str], continuations: Sequence[str]) -> Any:
        return self.inner.token_logprobs(prompts, continuations)

    def score_ids(self, prompts: Sequence[Sequence[int]], conts: Sequence[Sequence[int]],
                  **options: Any) -> Any:
        return self.inner.score_ids(prompts, conts, **options)

    def __repr__(self) -> str:
        return f"BatchedGenerator({self.inner.name!r})"

    def start_decoding(self, prompts: Sequence[Sequence[int]], *,
                       decoder_prefix: Sequence[int] | None = None) -> SteppedDecodeState:
        return SteppedDecodeState(self.inner, prompts, decoder_prefix)

    def generate(self, prompt: str, *, max_new_tokens: int = 256,
                 on_token: Callable[[str], None] | None = None) -> str:
        return generate_text(self, prompt, max_new_tokens=max_new_tokens, on_token=on_token)


def batched(generator: Any) -> Any:
    """``generator`` as the worker serves it: a :class:`BatchedGenerator` for a Hugging Face
    model, any other generator as it is (its tasks run one after another)."""
    from ragmix.generation.hf import HFGenerator

    return BatchedGenerator(generator) if isinstance(generator, HFGenerator) else generator
