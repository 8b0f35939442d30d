"""Ingestion as job resources: queued, running, done or failed, with progress and a reason.

Jobs run one at a time on one background thread (a collection takes one writer
at a time anyway). Each job is also written to ``DATA/jobs/ID.json`` when its
state changes, so a job that a stopped server left queued or running is marked
failed when the server starts again: no job stays "running" for ever.

>>> import tempfile
>>> jobs = Jobs(Path(tempfile.mkdtemp()))
>>> job, created = jobs.create("docs", ["a.md"], idempotency="key-1")
>>> jobs.run(job, lambda job, progress: [{"filename": "a.md", "status": "added"}])
>>> jobs.wait(job.id, timeout=5)["status"]
'done'
>>> jobs.create("docs", ["a.md"], idempotency="key-1")[0].id == job.id  # the same job
True
>>> broken, _ = jobs.create("docs", ["b.md"])
>>> jobs.run(broken, lambda job, progress: 1 / 0)
>>> record = jobs.wait(broken.id, timeout=5)
>>> record["status"], record["error"]
('failed', 'ZeroDivisionError: division by zero')
>>> jobs.close()
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragmix.errors import BadInputError, RagmixError
from ragmix.store.manifest import write_json_atomic

log = logging.getLogger(__name__)

JOB_STATES = ("queued", "running", "done", "failed")
FINISHED = ("done", "failed")
STOPPED = ("the server stopped before this job finished; upload the files again "
           "(identical files give the documents already indexed, never duplicates)")


@dataclass
class Job:
    """One ingestion request; changed only by :class:`Jobs`, under its lock."""

    id: str
    collection: str
    files: list[str]
    status: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    # stage: reading, embedding, ...; done/total count the stage's items (total may be None)
    progress: dict[str, Any] = field(default_factory=lambda: {
        "stage": "queued", "done": 0, "total": None, "files_done": 0})
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    idempotency: str = ""  # hash of the client's Idempotency-Key and who sent it


Work = Callable[[Job, "JobProgress"], list[dict[str, Any]]]


class JobProgress:
    """A :class:`ragmix.store.ingest.Progress` that writes into a job's ``progress``."""

    def __init__(self, jobs: Jobs, job: Job) -> None:
        self._jobs, self._job = jobs, job

    def start(self, stage: str, total: int | None) -> None:
        with self._jobs.lock:
            self._job.progress.update(stage=stage, done=0, total=total)

    def advance(self, stage: str, n: int = 1) -> None:
        with self._jobs.lock:
            self._job.progress["done"] += n

    def file_done(self) -> None:
        with self._jobs.lock:
            self._job.progress["files_done"] += 1
            # on disk too: after a crash the record says how far the job got
            self._jobs.save_quietly(self._job)


class Jobs:
    """The job records of one server, kept in ``folder``, and the thread that runs them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._by_key: dict[str, str] = {}
        self._changed = threading.Condition(self.lock)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragmix-ingest")
        folder.mkdir(parents=True, exist_ok=True)
        self._load()

    def _load(self) -> None:
        for path in sorted(self.folder.glob("*.json")):
            try:
                job = Job(**json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("ignoring unreadable job record %s: %s", path, exc)
                continue
            if job.status not in FINISHED:
                job.status, job.error, job.finished = "failed", STOPPED, time.time()
                job.progress["stage"] = "failed"
                self._save(job)
            self._jobs[job.id] = job
            if job.idempotency:
                self._by_key[job.idempotency] = job.id

    @staticmethod
    def idempotency_hash(principal: str, key: str) -> str:
        return hashlib.sha256(f"{principal}\0{key}".encode()).hexdigest()

    def find(self, idempotency: str) -> dict[str, Any] | None:
        """The record of the job created with this idempotency hash, if any."""
        with self.lock:
            job_id = self._by_key.get(idempotency)
            return None if job_id is None else _record(self._jobs[job_id])

    def create(self, collection: str, files: list[str], *,
               idempotency: str = "") -> tuple[Job, bool]:
        """A new queued job, or (with a known idempotency hash) the job made before."""
        with self.lock:
            if idempotency and idempotency in self._by_key:
                job = self._jobs[self._by_key[idempotency]]
                if job.collection != collection:
                    raise BadInputError(
                        f"this Idempotency-Key was used for an upload to {job.collection!r}, "
                        f"not {collection!r}; send a new key for a new upload")
                return job, False
            job = Job(id=uuid.uuid4().hex, collection=collection, files=list(files),
                      idempotency=idempotency)
            self._jobs[job.id] = job
            if idempotency:
                self._by_key[idempotency] = job.id
            self._save(job)
        return job, True

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self.lock:
            job = self._jobs.get(job_id)
            return None if job is None else _record(job)

    def run(self, job: Job, work: Work) -> None:
        """Run ``work(job, progress)`` on the job thread; its list becomes ``results``."""
        self._executor.submit(self._run, job, work)

    def _run(self, job: Job, work: Work) -> None:
        self._set(job, status="running", started=time.time())
        try:
            results = work(job, JobProgress(self, job))
        except RagmixError as exc:  # a reason ragmix gives on purpose: shown as it is
            self._set(job, status="failed", error=str(exc), finished=time.time())
        except Exception as exc:  # the job boundary: a job never stays running
            log.exception("ingestion job %s failed", job.id)
            self._set(job, status="failed", error=f"{type(exc).__name__}: {exc}",
                      finished=time.time())
        else:
            self._set(job, status="done", results=results, finished=time.time())

    def _set(self, job: Job, **changes: Any) -> None:
        with self.lock:
            for name, value in changes.items():
                setattr(job, name, value)
            if job.status in FINISHED:
                job.progress["stage"] = job.status
            self.save_quietly(job)
            self._changed.notify_all()

    def save_quietly(self, job: Job) -> None:
        """Write the job's record (under ``lock``); a failed write is logged, not raised."""
        try:
            self._save(job)
        except OSError as exc:  # the record in memory is still right
            log.warning("could not save job %s: %s", job.id, exc)

    def wait(self, job_id: str, *, timeout: float) -> dict[str, Any]:
        """The job's record once it is done or failed (or at ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self._jobs[job_id].status not in FINISHED:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return _record(self._jobs[job_id])

    def _save(self, job: Job) -> None:
        write_json_atomic(self.folder / f"{job.id}.json", asdict(job))

    def close(self) -> None:
        """Stop taking jobs; queued ones are marked failed, a running one finishes."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self.lock:
            queued = [job for job in self._jobs.values() if job.status == "queued"]
        for job in queued:
            self._set(job, status="failed", error=STOPPED, finished=time.time())


def _record(job: Job) -> dict[str, Any]:
    """The job as the API shows it (a copy, without the idempotency hash)."""
    record = json.loads(json.dumps(asdict(job)))
    del record["idempotency"]
    return record
