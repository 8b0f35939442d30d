"""The FastAPI app: ``create_app(settings)``, with ``/openapi.json`` and offline ``/docs``.

>>> import tempfile
>>> from pathlib import Path
>>> from fastapi.testclient import TestClient
>>> from ragmix import Collection
>>> from ragmix.testing import ScriptedGenerator
>>> tmp = Path(tempfile.mkdtemp())
>>> Collection.create(tmp / "notes", encoder="hashing-256").close()
>>> settings = ServerSettings.build([tmp / "notes"], data_dir=tmp / "data",
...                                 generator=lambda: ScriptedGenerator("Yes [1]."))
>>> with TestClient(create_app(settings)) as client:
...     [c["name"] for c in client.get("/v1/collections").json()["collections"]]
['notes']
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Receive, Scope, Send

from ragmix.errors import BadInputError
from ragmix.server import chat, errors, page, routes_collections, routes_documents, routes_query
from ragmix.server.auth import RateLimiter
from ragmix.server.catalog import CREATED, created_dirs
from ragmix.server.deps import ServerState
from ragmix.server.errors import ProblemError, problem, problem_response
from ragmix.server.jobs import Jobs
from ragmix.server.served import ServedCollection
from ragmix.server.settings import ServerSettings
from ragmix.server.uploads import clear_staging
from ragmix.server.worker import GeneratorWorker

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Search and cited answers over ragmix collections. Every error is RFC 9457
`application/problem+json` with a stable `code`. Keys go in
`Authorization: Bearer KEY` (scopes: read, write, admin) when the server has any.
"""


def create_app(settings: ServerSettings) -> FastAPI:
    """The API over ``settings.collections``; the collections are opened here."""
    app = FastAPIOffline(title="ragmix", version=_version(), description=_DESCRIPTION,
                         lifespan=_lifespan)
    app.state.ragmix = _state(settings)
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes)
    app.include_router(routes_collections.router, prefix="/v1", tags=["collections"])
    app.include_router(routes_documents.router, prefix="/v1", tags=["collections"])
    app.include_router(routes_query.router, prefix="/v1", tags=["search and ask"])
    app.include_router(chat.router, prefix="/v1", tags=["OpenAI-compatible"])
    page.install(app)
    return app


def _state(settings: ServerSettings) -> ServerState:
    data = settings.data_dir.resolve()
    staging = data / "staging"
    clear_staging(staging)  # what a stopped server left before indexing it
    created_root = data / CREATED
    served: dict[str, ServedCollection] = {}
    try:
        for name, directory in settings.collections.items():
            served[name] = ServedCollection(name, directory, data / "collections" / name,
                                            dtype=settings.dtype)
        for directory in created_dirs(created_root):
            if directory.name in served:
                raise BadInputError(
                    f"two collections are both named {directory.name!r}: "
                    f"{served[directory.name].shown_location} (--collection) and {directory} "
                    "(created over the API); rename the --collection folder")
            served[directory.name] = ServedCollection(
                directory.name, directory, data / "collections" / directory.name,
                dtype=settings.dtype, created=True)
        jobs = Jobs(data / "jobs")
    except BaseException:
        for opened in served.values():
            opened.close()
        raise
    worker = GeneratorWorker(settings.generator)
    worker.start()
    limiter = RateLimiter(settings.rate_limit) if settings.rate_limit else None
    return ServerState(settings=settings, collections=served, jobs=jobs, worker=worker,
                       limiter=limiter, staging=staging, created_root=created_root)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    app.state.ragmix.close()


def _version() -> str:
    try:
        return version("ragmix")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


class BodyLimit:
    """Answers 413 to a request body over ``max_bytes``: by its Content-Length at once, or
    while it is read when it comes in chunks."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _too_large(self, size: str) -> ProblemError:
        return ProblemError(413, "body_too_large",
                            f"the request body is {size} bytes; this server takes at most "
                            f"{self.max_bytes:,}: send less, or split the upload")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > self.max_bytes:
            body = problem(413, "body_too_large", str(self._too_large(f"{int(length):,}").detail))
            response = problem_response({**body, "instance": scope["path"]})
            return await response(scope, receive, send)
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._too_large(f"over {seen:,}")
            return message

        await self.app(scope, counted, send)
