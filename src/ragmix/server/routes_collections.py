"""Creating and deleting collections (scope ``admin``): ``POST /v1/collections``, ``DELETE``.

Created collections live in ``DATA/created/NAME`` and are served again when the
server restarts. Only those may be deleted over the API: a collection given
with ``--collection`` is the operator's folder, which the API never removes.
"""

from __future__ import annotations

import shutil

from fastapi import APIRouter, Depends, Request, Response

from ragmix.server.auth import Principal
from ragmix.server.catalog import create_collection, remove_collection
from ragmix.server.deps import requires, state
from ragmix.server.errors import ProblemError
from ragmix.server.routes_documents import collection_info
from ragmix.server.schemas import CreateCollectionRequest, problem_responses
from ragmix.server.served import ServedCollection

router = APIRouter(responses=problem_responses(401, 403, 404, 409, 422, 429))


@router.post("/collections", status_code=201, summary="Create an empty collection",
             responses=problem_responses(400, 413))  # a body not parsed, or too large
def create(body: CreateCollectionRequest, request: Request, response: Response,
           _: Principal = Depends(requires("admin"))):
    server = state(request)
    with server.admin_lock:  # one creation at a time: the name check and the folder agree
        if body.name in server.collections:
            raise ProblemError(409, "collection_exists", f"a collection {body.name!r} is "
                               "already served; pick another name, or delete it first")
        folder = create_collection(server.created_root, body.spec(),
                                   dtype=server.settings.dtype)
        try:
            served = ServedCollection(
                body.name, folder, server.settings.data_dir.resolve() / "collections" / body.name,
                dtype=server.settings.dtype, created=True)
        except BaseException:  # not served: not kept either, so the name stays free
            remove_collection(folder, server.created_root)
            raise
        server.collections = {**server.collections, body.name: served}
    response.headers["Location"] = f"/v1/collections/{body.name}"
    return collection_info(served)


@router.delete("/collections/{name}", summary="Delete a collection made over the API")
def delete(name: str, request: Request, _: Principal = Depends(requires("admin"))):
    server = state(request)
    with server.admin_lock:
        served = server.collection(name)
        if not served.created:
            raise ProblemError(
                409, "collection_not_deletable",
                f"{name!r} is served from {served.shown_location!r}, given with --collection; "
                "the API deletes only collections it created. Restart the server without it "
                "to stop serving it")
        server.collections = {k: v for k, v in server.collections.items() if k != name}
    served.close()  # waits for the search or ingestion running on it; later ones get 404
    remove_collection(served.directory, server.created_root)
    shutil.rmtree(served.uploads, ignore_errors=True)
    return {"deleted": name}

