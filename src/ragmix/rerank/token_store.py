"""A persistent store of passage token vectors, so late-interaction reranking costs only the query.

Encoding 50 candidate passages at query time is ~1.2 s of MiniLM on 2 CPU
cores; reading their stored token vectors and taking MaxSim is a few ms. A
:class:`TokenStore` is a directory that keeps them across processes:

    from ragmix.rerank.token_store import TokenStore, passage_key

    with TokenStore("my-col/rerank/li", dim=128, model_fingerprint=fp) as store:
        store.put([(passage_key(text, 256), vectors)])  # vectors (T, 128), any float
        [found] = store.get([passage_key(text, 256)])  # (T, 128) float16, or None

On disk (``directory/``):

- ``vectors.f16``: every passage's token vectors, one row of ``dim`` float16
  values per token, appended and never rewritten; read through a
  :class:`numpy.memmap`, so a lookup touches only the rows it returns.
- ``index.sqlite``: ``passages(key, row, count)``, where ``key`` is
  :func:`passage_key` (sha256 of the passage text and the scorer's
  ``max_length``) and the vectors are rows ``row .. row + count``; and
  ``state(rows)``, the rows of ``vectors.f16`` that committed entries cover.
  SQLite runs in WAL mode, so readers never wait for a writer.
- ``meta.json``: format, version, dtype, ``dim``, ``model_fingerprint`` and a
  readable model description. A store answers only the model that wrote it:
  opening it with another fingerprint or width is refused.
- ``token_store.lock``: held (``fcntl.flock``) by the one process writing a batch.

**Why float16.** Half of float32, and the vectors are unit-length, so rounding
moves a cosine by at most 2**-11 (~5e-4) and a MaxSim score (a sum over at
most 32 query tokens) by at most 32 * 2**-11; int8 would halve it again but
needs a per-dimension calibration fitted on the collection, and residual
compression (ColBERTv2) needs centroids. The cost: a SciFact abstract keeps
~210 tokens after punctuation (209 on average over the first 50), so the
5,183 abstracts make ~1.1M rows: 0.28 GB at 128 dimensions (a model trained
with a projection), 0.83 GB at MiniLM's own 384 (161 kB an abstract).

**Crash safety.** A batch is written under the lock in this order: the
vectors are appended at row ``state.rows`` and fsynced, then one SQLite
transaction adds the index entries and moves ``state.rows``. A crash before
the commit leaves vectors no entry points at; a writer taking the lock (and
a store being opened while no one writes) cuts the file back to
``state.rows``. An entry whose rows lie past the end of the file (the data
lost while its entry survived: a disk that reordered writes, a file cut by
hand) is never returned by a reader, and a writer deletes it. A reader maps
the file as it finds it and only touches rows of committed entries, which
are never cut; a batch's vectors are copied out of the map, so they outlive
the store.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ragmix.errors import BadInputError, RagmixError

FORMAT = "ragmix-token-store"
VERSION = 1
META_FILE = "meta.json"
DATA_FILE = "vectors.f16"
INDEX_FILE = "index.sqlite"
LOCK_FILE = "token_store.lock"  # not ".lock": a collection directory already has that one
OWN_FILES = frozenset({META_FILE, DATA_FILE, INDEX_FILE, LOCK_FILE, f"{INDEX_FILE}-wal",
                       f"{INDEX_FILE}-shm", f"{META_FILE}.tmp"})
DTYPE = np.dtype(np.float16)
LOCK_TIMEOUT_S = 30.0  # a writer holds the lock for one batch's write (ms), never while encoding
SQL_CHUNK = 500  # keys per IN (...) lookup, well under SQLite's variable limit
SCHEMA = """
CREATE TABLE IF NOT EXISTS passages (
    key BLOB PRIMARY KEY, row INTEGER NOT NULL, count INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO state VALUES ('rows', 0);
"""


class TokenStoreBusyError(RagmixError, TimeoutError):
    """Another process held a token store's write lock for longer than the writer would wait."""


def passage_key(text: str, max_length: int) -> bytes:
    """The 32-byte store key of a passage encoded with its tokens cut at ``max_length``.

    >>> len(passage_key("Paris is big.", 256))
    32
    >>> passage_key("Paris is big.", 256) == passage_key("Paris is big.", 128)
    False
    """
    return hashlib.sha256(f"{max_length}\0{text}".encode()).digest()


def fingerprint(files: Sequence[Path], settings: dict[str, Any]) -> str:
    """sha256 (hex) over ``settings`` (as sorted JSON) and each file's name and bytes, in order."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in files:
        digest.update(f"\0{path.name}\0{path.stat().st_size}\0".encode())  # sizes delimit the files
        with open(path, "rb") as fh:  # hashlib.file_digest is 3.11+
            while block := fh.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def _try_flock(fh: Any, timeout: float) -> bool:
    """Take an exclusive flock on ``fh``, polling for up to ``timeout`` s; whether it was taken."""
    deadline, pause = time.monotonic() + timeout, 0.002
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(2 * pause, 0.05)  # a batch's write takes ms: poll soon, then gently


class TokenStore:
    """Passage token vectors on disk, float16, keyed by :func:`passage_key`; see the module doc.

    ``dim`` is the vectors' width and ``model_fingerprint`` names the model
    and settings that made them (``model``, a readable description, goes into
    ``meta.json`` and error messages). The directory is created if missing.
    Many processes may read and write one store: a writer waits up to
    ``lock_timeout`` seconds for another's batch, then raises
    :class:`TokenStoreBusyError`. Safe to share between threads.
    """

    def __init__(self, directory: str | Path, *, dim: int, model_fingerprint: str,
                 model: str = "", lock_timeout: float = LOCK_TIMEOUT_S) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise BadInputError(f"dim must be an integer > 0, got {dim!r}")
        if not isinstance(model_fingerprint, str) or not model_fingerprint:
            raise BadInputError(f"model_fingerprint must be a non-empty string, got "
                                f"{model_fingerprint!r}")
        if not (isinstance(lock_timeout, (int, float)) and lock_timeout >= 0):
            raise BadInputError(f"lock_timeout must be a number >= 0, got {lock_timeout!r}")
        self.directory = Path(directory).expanduser()
        self.dim, self.fingerprint, self.model = dim, model_fingerprint, model
        self.lock_timeout = float(lock_timeout)
        self._row_bytes = dim * DTYPE.itemsize
        self._read_lock, self._write_lock = threading.Lock(), threading.Lock()
        self._map: np.ndarray | None = None  # (rows, dim) float16 view of the data file
        self._rows = 0  # rows self._map covers
        self._writer: sqlite3.Connection | None = None
        self._open()

    def _open(self) -> None:
        if self.directory.exists() and not self.directory.is_dir():
            raise BadInputError(f"token store {str(self.directory)!r} is a file; give a directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = self._read_meta()
        if meta is None:
            strangers = sorted(p.name for p in self.directory.iterdir() if p.name not in OWN_FILES)
            if strangers:
                raise BadInputError(
                    f"{str(self.directory)!r} holds no token store ({META_FILE}) but other files "
                    f"({', '.join(strangers[:3])}); give an empty or new directory, e.g. "
                    "<collection>/rerank/late-interaction")
            with self._flock(self.lock_timeout):
                meta = self._read_meta() or self._create()
        self._check_meta(meta)
        self._reader = self._connect()
        with self._flock(0.0, missing_ok=True) as held:
            if held:  # no one is writing: cut a crashed writer's tail now
                self._recover(self._writing())

    # -- metadata ------------------------------------------------------------------
    def _read_meta(self) -> dict[str, Any] | None:
        path = self.directory / META_FILE
        if not path.is_file():
            return None
        try:
            meta = json.loads(path.read_text())
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ValueError(f"format is not {FORMAT!r}")
            return meta
        except (OSError, ValueError) as exc:
            raise BadInputError(f"{str(path)!r} is not a token store's metadata ({exc}); delete "
                                f"{str(self.directory)!r} to rebuild the store") from None

    def _create(self) -> dict[str, Any]:
        """The schema, an empty data file, then meta.json last: meta.json means a whole store."""
        for name in (INDEX_FILE, f"{INDEX_FILE}-wal", f"{INDEX_FILE}-shm", DATA_FILE):
            (self.directory / name).unlink(missing_ok=True)  # left without meta: no one's vectors
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")  # persistent: readers never wait for writers
            conn.executescript(SCHEMA)
        conn.close()
        (self.directory / DATA_FILE).touch()
        meta = {"format": FORMAT, "version": VERSION, "dtype": DTYPE.name, "dim": self.dim,
                "model_fingerprint": self.fingerprint, "model": self.model,
                "key": "sha256(f'{max_length}\\0{text}')"}
        tmp = self.directory / f"{META_FILE}.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, self.directory / META_FILE)
        return meta

    def _check_meta(self, meta: dict[str, Any]) -> None:
        where = str(self.directory)
        if meta.get("version") != VERSION or meta.get("dtype") != DTYPE.name:
            raise BadInputError(f"token store {where!r} is version {meta.get('version')!r} "
                                f"({meta.get('dtype')!r}); this ragmix reads version {VERSION} "
                                f"({DTYPE.name}): delete {where!r} to rebuild it")
        if meta.get("dim") != self.dim or meta.get("model_fingerprint") != self.fingerprint:
            their_fp = str(meta.get("model_fingerprint"))[:16]
            theirs = f"{meta.get('dim')}-d vectors of model {their_fp}"
            ours = f"{self.dim}-d vectors of model {self.fingerprint[:16]}"
            raise BadInputError(
                f"token store {where!r} holds {theirs} ({meta.get('model') or 'unnamed'}), not the "
                f"{ours} ({self.model or 'unnamed'}) asked for; give this model another store "
                f"directory, or delete {where!r} to rebuild it")

    # -- reads ---------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.directory / INDEX_FILE, isolation_level=None,
                               check_same_thread=False)  # our own locks guard each connection
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    def _lookup(self, conn: sqlite3.Connection,
                keys: Sequence[bytes]) -> dict[bytes, tuple[int, int]]:
        """(row, count) of each stored key among ``keys``."""
        found: dict[bytes, tuple[int, int]] = {}
        for start in range(0, len(keys), SQL_CHUNK):
            chunk = list(keys[start : start + SQL_CHUNK])
            marks = ",".join("?" * len(chunk))
            for key, row, count in conn.execute(
                    f"SELECT key, row, count FROM passages WHERE key IN ({marks})", chunk):
                found[bytes(key)] = (int(row), int(count))
        return found

    def _live(self, keys: Sequence[bytes]) -> dict[bytes, tuple[int, int]]:
        """The entries of ``keys`` whose rows the data file holds (remapped if it grew)."""
        self._check_open()
        found = self._lookup(self._reader, keys)
        if any(row + count > self._rows for row, count in found.values()):
            self._remap()
        return {k: rc for k, rc in found.items() if rc[0] + rc[1] <= self._rows}

    def _remap(self) -> None:
        path = self.directory / DATA_FILE
        rows = path.stat().st_size // self._row_bytes if path.exists() else 0
        self._map = np.memmap(path, dtype=DTYPE, mode="r", shape=(rows, self.dim)) \
            if rows else None  # (rows, dim); numpy cannot map an empty file
        self._rows = rows

    def get(self, keys: Iterable[bytes]) -> list[np.ndarray | None]:
        """Each key's token vectors, (T, dim) float16 (a copy), or None if not stored."""
        keys = [self._key(k) for k in keys]
        with self._read_lock:
            found = self._live(keys)
            out: list[np.ndarray | None] = []
            for key in keys:
                hit = found.get(key)
                out.append(None if hit is None else
                           np.array(self._map[hit[0] : hit[0] + hit[1]]))  # type: ignore[index]
        return out

    def has(self, keys: Iterable[bytes]) -> list[bool]:
        """Whether each key's vectors are stored, without reading them."""
        keys = [self._key(k) for k in keys]
        with self._read_lock:
            found = self._live(keys)
        return [key in found for key in keys]

    def __len__(self) -> int:
        with self._read_lock:
            self._check_open()
            self._remap()
            (n,) = self._reader.execute("SELECT count(*) FROM passages WHERE row + count <= ?",
                                        (self._rows,)).fetchone()
        return int(n)

    @property
    def nbytes(self) -> int:
        """Bytes of the vectors file that committed entries cover (float16 token vectors)."""
        with self._read_lock:
            self._check_open()
            (rows,) = self._reader.execute("SELECT value FROM state WHERE name = 'rows'").fetchone()
            self._remap()
            return min(int(rows), self._rows) * self._row_bytes

    # -- writes --------------------------------------------------------------------
    def put(self, items: Iterable[tuple[bytes, np.ndarray]]) -> int:
        """Store each ``(key, vectors (T, dim))`` not stored yet, as one batch; how many were new.

        Vectors are rounded to float16. Keys already stored (by this or
        another process) keep their first vectors.
        """
        batch: dict[bytes, np.ndarray] = {}
        for key, vectors in items:
            batch.setdefault(self._key(key), self._vectors(vectors))
        if not batch:
            return 0
        with self._write_lock, self._flock(self.lock_timeout):
            self._check_open()
            conn = self._writing()
            rows = self._recover(conn)
            stored = self._lookup(conn, list(batch))
            new = [(k, v) for k, v in batch.items() if k not in stored]
            if not new:
                return 0
            block = np.concatenate([v for _, v in new])  # (sum T, dim) float16
            with open(self.directory / DATA_FILE, "r+b") as fh:
                fh.seek(rows * self._row_bytes)
                fh.write(block.tobytes())
                fh.flush()
                os.fsync(fh.fileno())  # the vectors are on disk before any entry names them
            entries, row = [], rows
            for key, vectors in new:
                entries.append((key, row, len(vectors)))
                row += len(vectors)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO passages VALUES (?, ?, ?)", entries)
            conn.execute("UPDATE state SET value = ? WHERE name = 'rows'", (row,))
            conn.execute("COMMIT")
        return len(new)

    def _writing(self) -> sqlite3.Connection:
        if self._writer is None:
            self._writer = self._connect()
            # in WAL mode: a crash may lose the last commit, never tear one
            self._writer.execute("PRAGMA synchronous = NORMAL")
        return self._writer

    def _recover(self, conn: sqlite3.Connection) -> int:
        """With the lock held: drop entries past the file's end, cut the file to the committed
        rows; the committed rows."""
        (rows,) = conn.execute("SELECT value FROM state WHERE name = 'rows'").fetchone()
        path = self.directory / DATA_FILE
        size = path.stat().st_size if path.exists() else 0
        if size // self._row_bytes < rows:  # entries whose vectors never reached the disk
            rows = size // self._row_bytes
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM passages WHERE row + count > ?", (rows,))
            conn.execute("UPDATE state SET value = ? WHERE name = 'rows'", (rows,))
            conn.execute("COMMIT")
        if size > rows * self._row_bytes or not path.exists():
            with open(path, "ab") as fh:  # vectors of a batch whose entries were never committed
                fh.truncate(rows * self._row_bytes)
        return int(rows)

    @contextmanager
    def _flock(self, timeout: float, *, missing_ok: bool = False) -> Iterator[bool]:
        """Hold the store's write lock, waiting up to ``timeout`` s; with ``missing_ok``, yield
        False instead of raising when it is held by another."""
        with open(self.directory / LOCK_FILE, "a") as fh:
            held = _try_flock(fh, timeout)
            if not held and not missing_ok:
                raise TokenStoreBusyError(
                    f"token store {str(self.directory)!r} is being written by another process "
                    f"(its {LOCK_FILE} was held for over {timeout:g} s); wait for it, raise "
                    "lock_timeout, or give this scorer its own store directory")
            try:
                yield held
            finally:
                if held:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    # -- checks and lifetime -------------------------------------------------------
    def _key(self, key: bytes) -> bytes:
        if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
            raise BadInputError(f"a token store key is 32 bytes (passage_key(text, max_length)), "
                                f"got {key!r:.60}")
        return bytes(key)

    def _vectors(self, vectors: np.ndarray) -> np.ndarray:
        array = np.asarray(vectors)
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise BadInputError(f"token vectors must be (T, {self.dim}), got shape {array.shape}")
        with np.errstate(over="ignore"):  # an overflow is an inf, refused just below
            array = np.ascontiguousarray(array, dtype=DTYPE)  # (T, dim)
        if not np.isfinite(array).all():
            raise BadInputError("token vectors must be finite in float16 (|x| <= 65504); got "
                                "inf or nan: store unit vectors")
        return array

    def _check_open(self) -> None:
        if self._reader is None:
            raise BadInputError(f"token store {str(self.directory)!r} is closed; open it again")

    def close(self) -> None:
        """Close the index connections and drop the map; vectors already returned stay valid."""
        with self._write_lock, self._read_lock:
            for conn in (self._reader, self._writer):
                if conn is not None:
                    conn.close()
            self._reader = self._writer = None  # type: ignore[assignment]
            self._map, self._rows = None, 0

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TokenStore({str(self.directory)!r}, dim={self.dim})"
