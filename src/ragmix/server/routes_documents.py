"""Collections, documents and ingestion jobs: ``/v1/collections/...`` and ``/v1/jobs/{id}``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, File, Header, Query, Request, Response, UploadFile

from ragmix.server.auth import Principal
from ragmix.server.deps import ServerState, requires, state
from ragmix.server.errors import ProblemError, not_found
from ragmix.server.jobs import Job, JobProgress, Jobs
from ragmix.server.schemas import problem_responses
from ragmix.server.served import ServedCollection
from ragmix.server.uploads import glob_literal, index_upload, remove_kept, stage

router = APIRouter(responses=problem_responses(401, 403, 404, 413, 422, 429))


def collection_info(served: ServedCollection) -> dict[str, Any]:
    with served.reading() as col:
        return {"name": served.name, **col.info()}


@router.get("/collections", summary="The collections this server serves, with their info")
def list_collections(request: Request, _: Principal = Depends(requires("read"))):
    server = state(request)
    return {"collections": [collection_info(served) for served in server.collections.values()]}


@router.get("/collections/{name}", summary="One collection's counts, settings and size")
def get_collection(name: str, request: Request, _: Principal = Depends(requires("read"))):
    return collection_info(state(request).collection(name))


@router.get("/collections/{name}/documents", summary="Documents, by path or id glob")
def list_documents(name: str, request: Request,
                   pattern: str = Query("*", max_length=1_000,
                                        description="Glob on the document path or id."),
                   offset: int = Query(0, ge=0), limit: int = Query(1_000, ge=1, le=10_000),
                   _: Principal = Depends(requires("read"))):
    with state(request).collection(name).reading() as col:
        rows = col.documents(pattern)
    return {"total": len(rows), "documents": [asdict(row) for row in rows[offset:offset + limit]]}


@router.get("/collections/{name}/documents/{doc_id:path}", summary="One document by its id")
def get_document(name: str, doc_id: str, request: Request,
                 _: Principal = Depends(requires("read"))):
    with state(request).collection(name).reading() as col:
        rows = [row for row in col.documents(glob_literal(doc_id)) if row.doc_id == doc_id]
    if not rows:
        raise not_found("unknown_document", f"no document {doc_id!r} in {name!r}; list them "
                        f"with GET /v1/collections/{name}/documents")
    return asdict(rows[0])


@router.delete("/collections/{name}/documents", summary="Delete the documents a glob matches")
def delete_documents(name: str, request: Request,
                     pattern: str = Query(..., min_length=1, max_length=1_000,
                                          description="Glob on the document path or id; "
                                                      "`*` deletes every document."),
                     _: Principal = Depends(requires("write"))):
    return {"deleted": _delete(state(request).collection(name), pattern, exact=None)}


@router.delete("/collections/{name}/documents/{doc_id:path}", summary="Delete one document")
def delete_document(name: str, doc_id: str, request: Request,
                    _: Principal = Depends(requires("write"))):
    return {"deleted": _delete(state(request).collection(name), glob_literal(doc_id),
                               exact=doc_id)}


def _delete(served: ServedCollection, pattern: str, *, exact: str | None) -> list[str]:
    """Delete what ``pattern`` matches (only ``exact`` if given) and the files kept for it."""
    with served.writing() as col:
        rows = [row for row in col.documents(pattern) if exact is None or row.doc_id == exact]
        removed = col.delete([glob_literal(row.doc_id) for row in rows]) if rows else []
    if not removed:
        what = f"document {exact!r}" if exact is not None else f"document matches {pattern!r}"
        raise not_found("no_document_matches", f"no {what} in {served.name!r}; list them with "
                        f"GET /v1/collections/{served.name}/documents")
    remove_kept([row.source for row in rows], served.uploads)
    return removed


@router.post("/collections/{name}/documents", status_code=202,
             summary="Upload files to index; the answer is the ingestion job",
             responses=problem_responses(400))  # a multipart body that cannot be parsed
def upload_documents(
    name: str, request: Request, response: Response,
    files: list[UploadFile] = File(..., description="Files to index (.txt .md .html .pdf, "
                                   "BEIR .jsonl), as with ragmix index."),
    idempotency_key: str | None = Header(None, max_length=200, description="Retrying with "
                                         "the same key gives the same job, not a second one."),
    principal: Principal = Depends(requires("write")),
):
    server = state(request)
    served = server.collection(name)
    limits = server.settings.limits
    if len(files) > limits.max_files:
        raise ProblemError(413, "too_many_files", f"{len(files)} files in one upload; this "
                           f"server takes at most {limits.max_files}: upload them in parts")
    key = Jobs.idempotency_hash(principal.id, idempotency_key) if idempotency_key else ""
    found = server.jobs.find(key) if key else None
    if found is None:
        staged = _stage_all(files, server.staging, limits.max_upload_bytes)
        job, created = server.jobs.create(name, [n for _, n in staged], idempotency=key)
        if created:
            server.jobs.run(job, _ingestion(served, staged, limits.max_upload_bytes))
        else:  # the same key raced this request: the other one's job stands
            for path, _ in staged:
                path.unlink(missing_ok=True)
        found = server.jobs.get(job.id)
    response.headers["Location"] = f"/v1/jobs/{found['id']}"
    return found


def _stage_all(files: list[UploadFile], staging: Path, max_bytes: int) -> list[tuple[Path, str]]:
    """Each upload copied to ``staging`` with its client name; none is left if one fails."""
    staged: list[tuple[Path, str]] = []
    try:
        for upload in files:
            path = stage(upload.file, upload.filename, staging, max_bytes=max_bytes)
            staged.append((path, upload.filename or "upload"))
    except BaseException:
        for path, _ in staged:
            path.unlink(missing_ok=True)
        raise
    return staged


def _ingestion(served: ServedCollection, staged: list[tuple[Path, str]], max_bytes: int):
    """The job's work: index each staged file into ``served``, one result per file."""

    def work(job: Job, progress: JobProgress) -> list[dict[str, Any]]:
        results = []
        try:
            with served.writing() as col:
                for path, filename in staged:
                    results.append(asdict(index_upload(col, path, filename, served.uploads,
                                                       max_bytes=max_bytes, progress=progress)))
                    progress.file_done()
        finally:
            for path, _ in staged:  # what an error left staged
                path.unlink(missing_ok=True)
        return results

    return work


@router.get("/jobs/{job_id}", summary="An ingestion job: queued, running, done or failed")
def get_job(job_id: str, request: Request, _: Principal = Depends(requires("read"))):
    server: ServerState = state(request)
    record = server.jobs.get(job_id)
    if record is None:
        raise not_found("unknown_job", f"no job {job_id!r} on this server (job ids are given "
                        "by POST /v1/collections/NAME/documents)")
    return record
