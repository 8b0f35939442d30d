"""Where uploaded files are kept, and how one is indexed without duplicates.

An upload is first written to ``DATA/staging/`` under a random name, then kept as
``DATA/collections/NAME/SAFE`` where SAFE is the client's file name reduced to
its last component and to letters, digits, ``.``, ``_`` and ``-``: whatever the
client calls a file (``../../x``, ``/etc/passwd``, ``C:\\boot.ini``), nothing is
written outside the data folder. The same name uploaded again replaces the
file (and the document, if its text changed); identical text under any name
gives the document that already has it.
"""

from __future__ import annotations

import os
import re
import shutil
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ragmix.documents.loaders import load_file
from ragmix.errors import BadInputError
from ragmix.store import Collection
from ragmix.store.ingest import Progress
from ragmix.types import Document, Skipped

_UNSAFE = re.compile(r"[^\w.-]+")  # \w: letters and digits of any script, and _
_MAX_STEM, _MAX_SUFFIX = 100, 16
_COPY_CHUNK = 1 << 20


class UploadTooLargeError(BadInputError):
    """An uploaded file is larger than the server accepts (HTTP 413)."""


def safe_filename(name: str | None) -> str:
    """A file name that is one harmless path component, keeping the extension.

    >>> [safe_filename(n) for n in ("../../x", "/etc/passwd", "C:\\\\a\\\\notes.md", "..")]
    ['x', 'passwd', 'notes.md', 'upload']
    >>> safe_filename("my report (final).PDF"), safe_filename(".env")
    ('my_report_final.pdf', 'env')
    """
    base = unicodedata.normalize("NFC", (name or "").replace("\\", "/")).rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).lstrip(".")  # no hidden files, no "." or ".."
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = stem.strip("_")[:_MAX_STEM] or "upload"
    return stem + ("." + suffix.lower()[:_MAX_SUFFIX] if suffix else "")


def inside(folder: Path, name: str) -> Path:
    """``folder / name``, checked to be directly inside ``folder`` once resolved."""
    path = (folder / name).resolve()
    if path.parent != folder.resolve():
        raise BadInputError(f"refusing to store {name!r} outside {str(folder)!r}")
    return path


def stage(source: BinaryIO, filename: str | None, staging: Path, *, max_bytes: int) -> Path:
    """Copy an upload into ``staging`` under a random name, at most ``max_bytes``."""
    staging.mkdir(parents=True, exist_ok=True)
    path = inside(staging, f"{uuid.uuid4().hex}-{safe_filename(filename)}")
    written = 0
    with open(path, "xb") as out:
        while chunk := source.read(_COPY_CHUNK):
            written += len(chunk)
            if written > max_bytes:
                break
            out.write(chunk)
    if written > max_bytes:
        path.unlink()
        raise UploadTooLargeError(
            f"{filename!r} is larger than this server's upload limit of {max_bytes:,} bytes; "
            "split it, or start the server with a larger --max-upload-mb")
    return path


@dataclass(frozen=True)
class FileResult:
    """What became of one uploaded file: added, updated, unchanged or skipped (with why)."""

    filename: str  # as the client sent it
    status: str
    doc_ids: tuple[str, ...] = field(default=())
    stored_as: str = ""  # the kept file's name inside the collection's upload folder
    reason: str = ""  # skipped: the same reasons as `ragmix index`


def index_upload(col: Collection, staged: Path, filename: str, folder: Path, *,
                 max_bytes: int, progress: Progress | None = None) -> FileResult:
    """Index a staged upload into ``col`` (a writer), keeping it in ``folder``.

    A file whose text a document already has is not indexed again: its result
    names that document.
    """
    items = list(load_file(staged, max_bytes=max_bytes))
    docs = [item for item in items if isinstance(item, Document)]
    if not docs:
        staged.unlink(missing_ok=True)
        reasons = "; ".join(item.reason for item in items if isinstance(item, Skipped))
        return FileResult(filename, "skipped", reason=reasons or "no documents in the file")
    if len(docs) == 1:
        same = [row.doc_id for row in col.documents() if row.content_hash == docs[0].content_hash]
        if same:
            staged.unlink(missing_ok=True)
            return FileResult(filename, "unchanged", doc_ids=tuple(same[:1]))
    folder.mkdir(parents=True, exist_ok=True)
    final = inside(folder, safe_filename(filename))
    os.replace(staged, final)  # replaces a file of the same name (or a link, never its target)
    report = col.add([final], max_bytes=max_bytes, progress=progress)
    doc_ids = tuple(row.doc_id for row in col.documents(glob_literal(str(final))))
    status = "added" if report.added else "updated" if report.updated else "unchanged"
    if not doc_ids:
        reasons = "; ".join(item.reason for item in report.skipped)
        return FileResult(filename, "skipped", stored_as=final.name,
                          reason=reasons or "no text to index")
    return FileResult(filename, status, doc_ids=doc_ids, stored_as=final.name)


def remove_kept(sources: list[str], folder: Path) -> None:
    """Delete the kept upload files among ``sources`` (documents just deleted)."""
    root = folder.resolve()
    for source in sources:
        path = Path(source)
        if path.parent == root and path.is_file():
            path.unlink(missing_ok=True)


def clear_staging(staging: Path) -> None:
    """Remove uploads staged by a server that stopped before indexing them."""
    if staging.is_dir():
        shutil.rmtree(staging, ignore_errors=True)


def glob_literal(text: str) -> str:
    """A SQLite GLOB pattern matching ``text`` exactly.

    >>> glob_literal("a*b?[c].md")
    'a[*]b[?][[]c].md'
    """
    return re.sub(r"([*?\[])", r"[\1]", text)
