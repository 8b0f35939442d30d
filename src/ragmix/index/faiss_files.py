"""A FAISS index's files: the index and its JSON settings sidecar, written crash-safely;
and how many OpenMP threads a search uses."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ragmix.errors import BadInputError, CollectionError

FORMAT = "ragmix.faiss/1"


def write_atomically(faiss: Any, index: Any, path: str, sidecar: dict[str, Any]) -> None:
    """Write ``sidecar`` to ``path + ".json"``, then ``index`` to ``path``, each by a
    temporary file, fsync and rename."""
    # Settings first: they never change for an index, so a crash between the two
    # writes leaves an old index beside valid settings, never an index without them.
    with open(path + ".json.tmp", "w", encoding="utf-8") as f:
        json.dump(sidecar, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".json.tmp", path + ".json")
    faiss.write_index(index, path + ".tmp")
    with open(path + ".tmp", "rb") as f:
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def read_sidecar(path: str) -> dict[str, Any]:
    """The settings written beside the index at ``path``; errors say to rebuild it."""
    if not os.path.exists(path):
        raise BadInputError(f"no FAISS index at {path!r}; build and save one first")
    try:
        with open(path + ".json", encoding="utf-8") as f:
            sidecar = json.load(f)
    except (OSError, ValueError) as exc:
        raise CollectionError(
            f"cannot read {path + '.json'!r} ({exc}); it is written by FaissIndex.save "
            "next to the index: rebuild the index"
        ) from exc
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT:
        raise CollectionError(f"{path + '.json'!r} is not a {FORMAT} sidecar; rebuild the index")
    return sidecar


# Below this many queries a search runs on one OpenMP thread: a query is scanned
# by one thread anyway, and on a busy machine starting a thread team per query
# costs milliseconds (flat, 13k x 384, 2 cores under load: p50 6.3 ms with 2
# threads, 1.5 ms with 1).
SINGLE_THREAD_BELOW = 4


@contextmanager
def threads_for(n_queries: int) -> Iterator[None]:
    """One OpenMP thread for fewer than :data:`SINGLE_THREAD_BELOW` queries, else as set."""
    from ragmix._extras import require

    faiss = require("faiss", "faiss")
    before = faiss.omp_get_max_threads()
    if n_queries >= SINGLE_THREAD_BELOW or before == 1:
        yield
        return
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
