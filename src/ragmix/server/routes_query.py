"""Search and ask: ``POST /v1/collections/{name}/search`` and ``.../ask`` (JSON or SSE)."""

from __future__ import annotations

import asyncio
from functools import partial

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ragmix.server.answering import answer_json, answerer, hits_json
from ragmix.server.auth import Principal
from ragmix.server.deps import requires, state
from ragmix.server.schemas import AskRequest, SearchRequest, problem_responses
from ragmix.server.sse import SSE_HEADERS, AnswerStream

router = APIRouter(responses=problem_responses(401, 403, 404, 413, 422, 429, 501, 503))

_STREAM_DOC = {
    "description": "The answer as JSON; or, with `\"stream\": true` or `Accept: "
                   "text/event-stream`, Server-Sent Events `retrieval`, `token`..., then "
                   "`final` or `error`.",
    "content": {"text/event-stream": {}},
}


@router.post("/collections/{name}/search", summary="The top-k passages for a query")
def search(name: str, body: SearchRequest, request: Request,
           _: Principal = Depends(requires("read"))):
    with state(request).collection(name).reading() as col:
        hits = col.search(body.query, body.k, mode=body.retrieval, source=body.source,
                          fusion=body.fusion)
    return {"hits": hits_json(hits)}


@router.post("/collections/{name}/ask", summary="Answer a question from the collection",
             responses={200: _STREAM_DOC})
async def ask(name: str, body: AskRequest, request: Request,
              _: Principal = Depends(requires("read"))):
    server = state(request)
    served = server.collection(name)
    generator = await run_in_threadpool(server.worker.generator)
    if body.stream or "text/event-stream" in request.headers.get("accept", ""):
        stream = AnswerStream(heartbeat_s=server.settings.heartbeat_s)
        searcher = served.searcher(fusion=body.fusion, source=body.source,
                                   on_hits=stream.on_hits)
        # set up before the response starts, so bad options are a 422, not an error event
        stream.answering = await run_in_threadpool(
            partial(answerer, searcher, generator, **body.answerer_options()))
        return StreamingResponse(stream.events(server.worker, body.question),
                                 media_type="text/event-stream", headers=SSE_HEADERS)
    searcher = served.searcher(fusion=body.fusion, source=body.source)
    answering = await run_in_threadpool(
        partial(answerer, searcher, generator, **body.answerer_options()))
    future = server.worker.submit(lambda gen: answering.ask(body.question))
    return answer_json(await asyncio.wrap_future(future))
