"""What the routes share: the server's state, the key check per scope, collection lookup."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from pathlib import Path

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ragmix.server.auth import (
    ANONYMOUS,
    SCOPES,
    Principal,
    RateLimiter,
    retry_after_header,
)
from ragmix.server.errors import ProblemError, not_found
from ragmix.server.jobs import Jobs
from ragmix.server.served import ServedCollection
from ragmix.server.settings import ServerSettings
from ragmix.server.worker import GeneratorWorker
from ragmix.types import Hit

if TYPE_CHECKING:
    from ragmix.rerank.base import Reranker


class SerialReranker:
    """A reranker that one request thread uses at a time (models and caches are not
    thread-safe); the first stage's search runs outside this lock."""

    def __init__(self, reranker: Reranker) -> None:
        self.inner, self._lock = reranker, threading.Lock()

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def tau(self) -> float:
        return float(getattr(self.inner, "tau", 1.0))

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        with self._lock:
            return self.inner.rerank(query, hits, k)


@dataclass
class ServerState:
    """What one running app holds, as ``app.state.ragmix`` (the settings keep only key hashes).

    ``collections`` is replaced, never changed in place, when one is created or
    deleted (under ``admin_lock``): a request iterating it sees one version.
    """

    settings: ServerSettings
    collections: dict[str, ServedCollection]
    jobs: Jobs
    worker: GeneratorWorker
    limiter: RateLimiter | None
    staging: Path
    created_root: Path  # DATA/created: the collections made over the API
    admin_lock: threading.Lock = field(default_factory=threading.Lock)
    _reranker: SerialReranker | None = None
    _reranker_lock: threading.Lock = field(default_factory=threading.Lock)

    def reranker(self) -> SerialReranker:
        """The server's reranker, loaded at the first request that asks for one (422 if the
        server was started without ``--rerank``)."""
        if self.settings.reranker is None:
            raise ProblemError(422, "rerank_unavailable", "this server was started without a "
                               "reranker; restart it with ragmix serve --rerank NAME, or drop "
                               "\"rerank\" from the request")
        with self._reranker_lock:
            if self._reranker is None:
                self._reranker = SerialReranker(self.settings.reranker())
            return self._reranker

    def collection(self, name: str) -> ServedCollection:
        served = self.collections.get(name)
        if served is None:
            raise not_found("unknown_collection",
                            f"no collection {name!r} on this server; it serves: "
                            f"{', '.join(sorted(self.collections))} (GET /v1/collections)")
        return served

    def close(self) -> None:
        self.jobs.close()
        self.worker.close()
        for served in self.collections.values():
            served.close()


def state(request: Request) -> ServerState:
    return request.app.state.ragmix


_bearer = HTTPBearer(auto_error=False, description="An API key of the server's --api-keys file "
                     "or $RAGMIX_API_KEYS, as `Authorization: Bearer KEY`.")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="ragmix"'}


def requires(scope: str):
    """A dependency that admits a request whose key has ``scope`` (any request if the server
    has no keys), within the key's rate limit; it gives the request's :class:`Principal`."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")

    # async: a hash and a token bucket take microseconds, so the check runs on the event
    # loop; a plain def would cost every request a hop to the thread pool and back.
    async def check(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(
            _bearer)) -> Principal:
        server = state(request)
        principal = _authenticate(server, credentials, scope, request)
        if server.limiter is not None:
            wait = server.limiter.acquire(principal.id)
            if wait > 0:
                limit = server.limiter.limit
                raise ProblemError(
                    429, "rate_limited", f"this key's rate limit ({limit.per_second:g} "
                    f"requests/s, bursts of {limit.burst}) is spent; retry in {wait:.1f} s",
                    headers={"Retry-After": retry_after_header(wait)})
        return principal

    return check


def _authenticate(server: ServerState, credentials: HTTPAuthorizationCredentials | None,
                  scope: str, request: Request) -> Principal:
    keys = server.settings.keys
    if not keys:
        return Principal(id=ANONYMOUS, scopes=frozenset(SCOPES))
    if credentials is None:
        raise ProblemError(401, "missing_api_key", "this server needs an API key: send "
                           "`Authorization: Bearer KEY`", headers=_CHALLENGE)
    principal = keys.authenticate(credentials.credentials)
    if principal is None:
        raise ProblemError(401, "invalid_api_key", "the API key is not one of this server's "
                           "keys; check it, or ask the server's admin for one",
                           headers=_CHALLENGE)
    if scope not in principal.scopes:
        have = ", ".join(sorted(principal.scopes))
        raise ProblemError(403, "insufficient_scope",
                           f"{request.method} {request.url.path} needs scope {scope!r}; this "
                           f"key has {have}; use a key with {scope!r} (KEY {scope} in the keys "
                           "file)")
    return principal
