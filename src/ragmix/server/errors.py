"""Every error as RFC 9457 problem details (``application/problem+json``) with a stable ``code``.

A problem has ``type`` (``urn:ragmix:problem:CODE``), ``title`` (the status
phrase), ``status``, ``detail`` (the bad value and the fix) and ``code``, which
clients may switch on; validation problems add ``errors``. ragmix's own
exceptions map to real statuses: a bad argument is 422, a missing extra 501, a
collection written by another process 409; a bug is 500 and its detail points
at the server log, never at a traceback.

>>> problem_for(BadInputError("k must be > 0, got 0"))[0]["status"]
422
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ragmix.errors import BadInputError, CollectionError, MissingExtraError, RagmixError
from ragmix.server.catalog import CollectionExistsError
from ragmix.server.served import CollectionGoneError
from ragmix.server.uploads import UploadTooLargeError
from ragmix.server.worker import Cancelled, GeneratorUnavailable

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_MAX_INPUT_CHARS = 80  # of a rejected value quoted back in a validation detail

# ragmix exception -> (status, code); the first match in order wins (subclasses first).
_RAGMIX_STATUSES: tuple[tuple[type[Exception], int, str], ...] = (
    (UploadTooLargeError, 413, "upload_too_large"),
    (BadInputError, 422, "bad_input"),
    (MissingExtraError, 501, "missing_extra"),
    (GeneratorUnavailable, 503, "generator_unavailable"),
    (CollectionGoneError, 404, "unknown_collection"),
    (CollectionExistsError, 409, "collection_exists"),
    (CollectionError, 409, "collection_conflict"),
    (Cancelled, 503, "cancelled"),
    (RagmixError, 500, "ragmix_error"),
)
_HTTP_CODES = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed",
               413: "body_too_large"}
# FastAPI and Starlette answer 400 to a body they cannot parse (bytes that are not UTF-8
# JSON, a broken multipart): their detail says what, this the fix.
_MALFORMED_FIX = ("; send the body as /openapi.json describes it: JSON in UTF-8, or "
                  "multipart/form-data for uploads")


class ProblemError(HTTPException):
    """An error a route raises on purpose, with its status, code and detail.

    A Starlette ``HTTPException``, so that FastAPI's body parser passes it on
    instead of turning it into a 400.
    """

    def __init__(self, status: int, code: str, detail: str, *,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.code, self.extra = code, extra

    def problem(self) -> dict[str, Any]:
        return problem(self.status_code, self.code, str(self.detail), **self.extra)


def problem(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The problem-details body for ``status``.

    >>> problem(404, "unknown_job", "no job 'x'")["type"]
    'urn:ragmix:problem:unknown_job'
    """
    return {"type": f"urn:ragmix:problem:{code}", "title": HTTPStatus(status).phrase,
            "status": status, "detail": detail, "code": code, **extra}


def problem_for(exc: Exception) -> tuple[dict[str, Any], dict[str, str]]:
    """The problem body and headers an exception is answered with."""
    if isinstance(exc, ProblemError):
        return exc.problem(), dict(exc.headers or {})
    if isinstance(exc, RequestValidationError):
        errors = [_validation_item(e) for e in exc.errors()]
        detail = "; ".join(f"{e['loc']}: {e['msg']}" for e in errors[:3]) or "invalid request"
        return problem(422, "validation_error", detail, errors=errors), {}
    if isinstance(exc, HTTPException):
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        detail = str(exc.detail) + (_MALFORMED_FIX if exc.status_code == 400 else "")
        return problem(exc.status_code, code, detail), dict(exc.headers or {})
    for kind, status, code in _RAGMIX_STATUSES:
        if isinstance(exc, kind):
            return problem(status, code, str(exc)), {}
    return problem(500, "internal_error", "the server failed on this request; the details are "
                   "in the server's log"), {}


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], headers=headers,
                        media_type=PROBLEM_JSON)


def _validation_item(error: dict[str, Any]) -> dict[str, Any]:
    """A pydantic error as ``{"loc": "body.k", "msg": ..., "type": ...}``, input quoted short."""
    loc = ".".join(str(part) for part in error.get("loc", ()))
    msg = error.get("msg", "invalid")
    if "input" in error and error.get("type") not in ("missing", "json_invalid"):
        shown = repr(error["input"])
        if len(shown) > _MAX_INPUT_CHARS:
            shown = shown[:_MAX_INPUT_CHARS] + "..."
        msg = f"{msg}, got {shown}"
    return {"loc": loc, "msg": msg, "type": error.get("type", "")}


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    body, headers = problem_for(exc)
    if body["status"] >= 500 and not isinstance(exc, (MissingExtraError, GeneratorUnavailable)):
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return problem_response({**body, "instance": request.url.path}, headers)


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with problem details."""
    for kind in (ProblemError, RequestValidationError, HTTPException, RagmixError, Exception):
        app.add_exception_handler(kind, _handle)


def not_found(code: str, detail: str) -> ProblemError:
    return ProblemError(404, code, detail)
