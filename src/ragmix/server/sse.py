"""An answer as Server-Sent Events: ``retrieval``, ``token``..., ``citation``..., then ``final``.

``retrieval`` carries the hits and the prior p(z|x) as soon as the passages are
found; ``token`` a piece of answer text (free "stuff" decoding streams word by
word, the other decodings send the whole answer once it is decoded);
``citation`` one cited passage or quote (:func:`~ragmix.server.answering.citations`);
``final`` the whole answer (sources, posterior, quotes, confidence), as the JSON
ask returns it; ``error``, instead of the citations and ``final``, a
problem-details body. A ``: heartbeat`` comment goes out
while nothing else does, so proxies keep the stream open; a client that goes
away stops its generation at the next token.

>>> sse("token", {"text": " Paris"})
'event: token\\ndata: {"text": " Paris"}\\n\\n'
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from ragmix.server.answering import Answering, answer_json, citations, hits_json
from ragmix.server.errors import problem_for
from ragmix.server.worker import Cancelled, GeneratorWorker
from ragmix.types import Hit

HEARTBEAT = ": heartbeat\n\n"
# no-cache: never replayed from a cache; X-Accel-Buffering: nginx passes events on at once.
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_DONE = "done"


def sse(event: str, data: Any) -> str:
    """One event: its name and its data as one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, allow_nan=False)}\n\n"


class AnswerStream:
    """One streamed answer: the worker's callbacks post events, :meth:`events` sends them.

    Give :meth:`on_hits` to the searcher the answerer uses, then set
    ``answering`` and iterate :meth:`events`.
    """

    def __init__(self, *, heartbeat_s: float) -> None:
        self.heartbeat_s = heartbeat_s
        self.answering: Answering | None = None
        self.cancelled = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, Any]] | None = None

    def on_hits(self, hits: list[Hit]) -> None:  # on the worker thread
        prior = self.answering.prior(hits) if self.answering is not None else []
        self._post("retrieval", {"hits": hits_json(hits), "prior": prior})

    def on_token(self, piece: str) -> None:  # on the worker thread
        if self.cancelled.is_set():
            raise Cancelled("the client closed the stream")
        self._post("token", {"text": piece})

    def _post(self, event: str, data: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (event, data))
        except RuntimeError:  # the event loop is closed: nobody is listening any more
            self.cancelled.set()

    async def messages(self, worker: GeneratorWorker,
                       question: str) -> AsyncIterator[tuple[str, Any]]:
        """``(event, data)`` in order: ``heartbeat`` (None) while waiting, ``retrieval`` and
        ``token`` as they come, then each ``citation`` and ``final`` (the :class:`Answer`),
        or ``error`` (a problem body)."""
        self._loop, self._queue = asyncio.get_running_loop(), asyncio.Queue()
        answering = self.answering
        future = worker.submit(lambda gen: answering.ask(question, on_token=self.on_token),
                               cancelled=self.cancelled)
        future.add_done_callback(lambda done: self._post(_DONE, done))
        try:
            while True:
                try:
                    event, data = await asyncio.wait_for(self._queue.get(), self.heartbeat_s)
                except asyncio.TimeoutError:
                    yield "heartbeat", None
                    continue
                if event != _DONE:
                    yield event, data
                    continue
                if data.exception() is not None:
                    yield "error", problem_for(data.exception())[0]
                    return
                answer = data.result()
                for citation in citations(answer):
                    yield "citation", citation
                yield "final", answer
                return
        finally:  # normal end, or the client went away (the generator is closed)
            self.cancelled.set()

    async def events(self, worker: GeneratorWorker, question: str) -> AsyncIterator[str]:
        """The stream's text: events in order, heartbeats between them while waiting."""
        async with aclosing(self.messages(worker, question)) as messages:
            async for event, data in messages:
                if event == "heartbeat":
                    yield HEARTBEAT
                else:
                    yield sse(event, answer_json(data) if event == "final" else data)
