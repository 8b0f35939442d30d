"""OpenAI-compatible chat completions: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Existing OpenAI clients work unchanged: ``model`` names a collection, the last
``user`` message is the question (earlier turns are not used: each answer comes
from the collection alone), and the answer is the assistant message. Where it
came from (sources with prior and posterior, citations and quotes with their
offsets, confidence, abstention, per-token provenance) rides in one extra field,
``ragmix`` (:func:`ragmix.server.answering.provenance`): on the response, or on
the final chunk of a stream, so a plain client parses every chunk. ragmix's own
options go in a ``ragmix`` object of the request (the options of ask).

OpenAI's sampling fields (``temperature``, ``top_p``, ``stop``, ``tools``...) are
accepted and not used: decoding is ragmix's. ``max_tokens`` caps the answer at
most at the server's limit. Errors are real HTTP statuses with problem details
(OpenAI clients raise on them); an error during a stream is an ``error`` chunk.

>>> _Completion("chatcmpl-1", 0, "notes").chunk({"content": "Kelm"})  # doctest: +ELLIPSIS
'data: {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, ...'
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ragmix.errors import BadInputError
from ragmix.server.answering import provenance
from ragmix.server.auth import Principal
from ragmix.server.deps import requires, state
from ragmix.server.routes_query import prepared
from ragmix.server.schemas import MAX_NEW_TOKENS, MAX_QUERY_CHARS, AskOptions, problem_responses
from ragmix.server.sse import HEARTBEAT, SSE_HEADERS, AnswerStream
from ragmix.server.worker import GeneratorWorker
from ragmix.types import Answer

router = APIRouter(responses=problem_responses(401, 403, 404, 413, 422, 429, 501, 503))

DONE = "data: [DONE]\n\n"


class ChatMessage(BaseModel):
    """One message; ``content`` is text or OpenAI's list of parts (the text parts are read)."""

    model_config = ConfigDict(extra="allow")  # name, tool_calls...: accepted, not used

    role: str = Field(max_length=32, examples=["user"])
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        parts = self.content or []
        return "\n".join(str(p.get("text", "")) for p in parts if p.get("type") == "text")


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; ``model`` is the collection."""

    model_config = ConfigDict(extra="ignore")  # OpenAI's sampling fields: accepted, not used

    model: str = Field(min_length=1, max_length=200, examples=["notes"],
                       description="The collection to answer from (GET /v1/models).")
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, description="Caps the answer's tokens, at "
                                   f"most at {MAX_NEW_TOKENS}.")
    max_completion_tokens: int | None = Field(None, ge=1, description="As max_tokens.")
    n: int = Field(1, ge=1, le=1, description="One answer per question.")
    ragmix: AskOptions = Field(default_factory=AskOptions,
                               description="ragmix's options: those of ask.")

    def question(self) -> str:
        """The last user message's text, or why there is none to answer."""
        users = [m for m in self.messages if m.role == "user"]
        text = users[-1].text().strip() if users else ""
        if not text:
            roles = ", ".join(m.role for m in self.messages)
            raise BadInputError(f"no question: the last message with role 'user' is the "
                                f"question, and none has text (roles given: {roles})")
        if len(text) > MAX_QUERY_CHARS:
            raise BadInputError(f"the question has {len(text):,} characters; at most "
                                f"{MAX_QUERY_CHARS:,}: ask a shorter one")
        return text

    def options(self) -> AskOptions:
        """``ragmix`` options, with ``max_tokens`` as ``max_new_tokens`` where not given."""
        cap = self.max_completion_tokens or self.max_tokens
        if cap is None or self.ragmix.max_new_tokens is not None:
            return self.ragmix
        return self.ragmix.model_copy(update={"max_new_tokens": min(cap, MAX_NEW_TOKENS)})


@dataclass(frozen=True)
class _Completion:
    """One completion's id, time and model, and its bodies in OpenAI's shapes."""

    id: str
    created: int
    model: str

    @classmethod
    def new(cls, model: str) -> _Completion:
        return cls(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model)

    def response(self, answer: Answer) -> dict[str, Any]:
        message = {"role": "assistant", "content": answer.text}
        return {"id": self.id, "object": "chat.completion", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop",
                             "logprobs": None}],
                "ragmix": provenance(answer, collection=self.model)}

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None,
              **extra: Any) -> str:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                             "logprobs": None}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False, allow_nan=False)}\n\n"


async def _chunks(stream: AnswerStream, worker: GeneratorWorker, question: str,
                  completion: _Completion) -> AsyncIterator[str]:
    """The stream: a role chunk, a chunk per piece of text, the final chunk with ``ragmix``
    (or an ``error`` chunk), then ``[DONE]``; heartbeat comments while waiting."""
    yield completion.chunk({"role": "assistant", "content": ""})
    sent = False
    async with aclosing(stream.messages(worker, question)) as messages:
        async for event, data in messages:
            if event == "heartbeat":
                yield HEARTBEAT
            elif event == "token":
                sent = True
                yield completion.chunk({"content": data["text"]})
            elif event == "final":
                if not sent and data.text:
                    yield completion.chunk({"content": data.text})
                yield completion.chunk({}, "stop",
                                       ragmix=provenance(data, collection=completion.model))
            elif event == "error":
                error = {"message": data["detail"], "type": data["code"], "code": data["code"],
                         "param": None, "status": data["status"]}
                yield f"data: {json.dumps({'error': error}, ensure_ascii=False)}\n\n"
            # retrieval and citation events: the final chunk's `ragmix` carries them
    yield DONE


@router.post("/chat/completions", summary="OpenAI-compatible: answer the last user message",
             responses={200: {"description": "A chat.completion; with `\"stream\": true`, "
                              "chat.completion.chunk events, the last with `ragmix`, then "
                              "`[DONE]`.", "content": {"text/event-stream": {}}},
                        **problem_responses(400)})
async def chat_completions(body: ChatRequest, request: Request,
                           _: Principal = Depends(requires("read"))):
    server = state(request)
    served = server.collection(body.model)
    question, options = body.question(), body.options()
    completion = _Completion.new(served.name)
    if body.stream:
        stream = AnswerStream(heartbeat_s=server.settings.heartbeat_s)
        await prepared(server, served, options, stream=stream)
        return StreamingResponse(_chunks(stream, server.worker, question, completion),
                                 media_type="text/event-stream", headers=SSE_HEADERS)
    answering = await prepared(server, served, options)
    future = server.worker.submit(lambda gen: answering.ask(question))
    return completion.response(await asyncio.wrap_future(future))


@router.get("/models", summary="OpenAI-compatible: the collections, as models")
def models(request: Request, _: Principal = Depends(requires("read"))):
    listed = [{"id": name, "object": "model", "created": served.created_at,
               "owned_by": "ragmix"} for name, served in state(request).collections.items()]
    return {"object": "list", "data": listed}
