"""The web page: ``/`` and its files at ``/static/``, served only from ``server/static/``.

Plain HTML, CSS and JavaScript modules, with no build step and nothing from a
CDN; a Content-Security-Policy lets the page load only its own files and talk
only to this server. Starlette's ``StaticFiles`` answers 404 to any path that
resolves outside the folder (``..``, encoded or not) and, with
``follow_symlink=False``, to links pointing out of it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"
# Only this origin: scripts, styles, fetches; no frames, no forms posted elsewhere.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                           "form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                # the page changes with the server: never an old script against a new API
                "Cache-Control": "no-cache"}


class PageFiles(StaticFiles):
    """The page's folder, each file with :data:`PAGE_HEADERS`."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def install(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files at ``/static/``."""
    app.mount("/static", PageFiles(directory=STATIC, follow_symlink=False), name="page")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)
