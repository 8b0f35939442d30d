"""Search and ask: ``POST /v1/collections/{name}/search`` and ``.../ask`` (JSON or SSE), and
``GET /v1/vocabulary``, the names their options take."""

from __future__ import annotations

import asyncio
from functools import partial

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ragmix.chunking import CHUNKERS
from ragmix.index import INDEX_KINDS
from ragmix.modes import (
    ASK_DECODINGS,
    ASK_DEFAULT_MODE,
    DEFAULT_SCORING,
    GENERATION_MODES,
    GROUNDED_MODES,
    RERANKERS,
    SCORINGS,
    ask_decoding,
)
from ragmix.retrieval.retrievers import DEFAULT_FUSION, FUSIONS, MODES
from ragmix.server.answering import Answering, answer_json, answerer, hits_json
from ragmix.server.auth import Principal
from ragmix.server.deps import ServerState, requires, state
from ragmix.server.schemas import (
    MAX_K,
    MAX_QUERY_CHARS,
    MAX_RERANK_DEPTH,
    AskOptions,
    AskRequest,
    SearchRequest,
    problem_responses,
)
from ragmix.server.served import ServedCollection
from ragmix.server.sse import SSE_HEADERS, AnswerStream

router = APIRouter(responses=problem_responses(401, 403, 404, 413, 422, 429, 501, 503))

_STREAM_DOC = {
    "description": "The answer as JSON; or, with `\"stream\": true` or `Accept: "
                   "text/event-stream`, Server-Sent Events `retrieval`, `token`..., "
                   "`citation`..., then `final`, or `error`.",
    "content": {"text/event-stream": {}},
}


@router.get("/vocabulary", summary="The names the options take: modes, decodings, fusions...")
def vocabulary():
    """One vocabulary for the CLI, the API and the page (``ragmix.modes`` and the retrievers');
    the page builds its selectors from it. Needs no key: it says nothing about the data."""
    return {
        "generation_modes": list(GENERATION_MODES),
        "decodings": list(ASK_DECODINGS),
        # the decoding each mode gets when none is asked for, and those that can quote
        "default_decoding": {mode: ask_decoding(mode, None) for mode in GENERATION_MODES},
        "grounded_modes": list(GROUNDED_MODES),
        "retrieval_modes": list(MODES),
        "rerankers": list(RERANKERS),
        "fusions": list(FUSIONS),
        "scorings": list(SCORINGS),
        "chunkers": list(CHUNKERS),
        "index_kinds": list(INDEX_KINDS),
        "defaults": {"mode": ASK_DEFAULT_MODE, "retrieval": "hybrid", "fusion": DEFAULT_FUSION,
                     "scoring": DEFAULT_SCORING, "k": 5},
        "limits": {"max_k": MAX_K, "max_query_chars": MAX_QUERY_CHARS,
                   "max_rerank_depth": MAX_RERANK_DEPTH},
    }


async def prepared(server: ServerState, served: ServedCollection, options: AskOptions, *,
                   stream: AnswerStream | None = None) -> Answering:
    """The answerer for ``options`` over ``served``, set up before any response starts, so
    that options which cannot work are a 422, never an error event in a stream."""
    generator = await run_in_threadpool(server.worker.generator)
    reranker = await run_in_threadpool(server.reranker) if options.rerank else None
    searcher = served.searcher(fusion=options.fusion, source=options.source,
                               on_hits=stream.on_hits if stream is not None else None,
                               rerank=reranker, rerank_depth=options.rerank_depth)
    settings = options.answerer_options()
    if reranker is not None and settings["tau"] is None:
        settings["tau"] = reranker.tau  # the reranker's scores, not the first stage's
    answering = await run_in_threadpool(partial(answerer, searcher, generator, **settings))
    if stream is not None:
        stream.answering = answering
    return answering


# 400: a body that is not JSON in UTF-8 (FastAPI cannot parse it)
@router.post("/collections/{name}/search", summary="The top-k passages for a query",
             responses=problem_responses(400))
def search(name: str, body: SearchRequest, request: Request,
           _: Principal = Depends(requires("read"))):
    server = state(request)
    reranker = server.reranker() if body.rerank else None
    searcher = server.collection(name).searcher(fusion=body.fusion, source=body.source,
                                                rerank=reranker, rerank_depth=body.rerank_depth)
    hits = searcher.search(body.query, body.k, mode=body.retrieval)
    # Already plain JSON values: FastAPI's encoder would walk it again (the busiest route)
    return JSONResponse({"hits": hits_json(hits)})


@router.post("/collections/{name}/ask", summary="Answer a question from the collection",
             responses={200: _STREAM_DOC, **problem_responses(400)})
async def ask(name: str, body: AskRequest, request: Request,
              _: Principal = Depends(requires("read"))):
    server = state(request)
    served = server.collection(name)
    if body.stream or "text/event-stream" in request.headers.get("accept", ""):
        stream = AnswerStream(heartbeat_s=server.settings.heartbeat_s)
        await prepared(server, served, body, stream=stream)
        return StreamingResponse(stream.events(server.worker, body.question),
                                 media_type="text/event-stream", headers=SSE_HEADERS)
    answering = await prepared(server, served, body)
    future = server.worker.submit(lambda gen: answering.ask(body.question))
    return answer_json(await asyncio.wrap_future(future))
