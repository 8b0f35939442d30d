"""kill -9 during indexing into PostgreSQL: every commit is a transaction, so the
collection opens, holds only whole documents, and re-running finishes the job."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_corpus
from ragmix.store import Collection, pg
from ragmix.store.pg.home import location_of
from test_crash_safety import CHILD

NAME = "crash_safety"


def _run_child(location: str, corpus: Path, cache: Path) -> subprocess.Popen:
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "RAGMIX_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, "-c", CHILD, location, str(corpus), "hnsw"],
                            stdout=subprocess.PIPE, env=env, text=True)


def _read_until(child: subprocess.Popen, line: str) -> None:
    for got in child.stdout:
        if got.strip() == line:
            return
    raise AssertionError(f"child ended before printing {line!r}")


def _check(location: str, n_files: int) -> int:
    """Open after a crash: no document is half-stored, searches see exactly the store."""
    with Collection.open(location) as col:
        for doc in col.documents():
            text = Path(doc.source).read_text()
            assert doc.n_chunks == len(col.chunker.chunk(doc.doc_id, text))
        n_chunks = col.backend.count_chunks()
        assert n_chunks == sum(d.n_chunks for d in col.documents())
        view = col.backend._bm25()  # the BM25 view reflects exactly the committed chunks
        assert sorted(np.asarray(view.ids).tolist()) == col.backend.chunk_ids().tolist()
        return col.backend.count_documents()


@pytest.mark.slow
def test_kill_minus_nine_mid_ingest_into_postgresql(pg_url, tmp_path: Path) -> None:
    n_files = 300
    corpus = write_corpus(tmp_path / "corpus", n_files, words_per_file=120)
    location = location_of(pg_url, NAME)
    with pg.connect(pg_url) as conn:
        pg.drop_schema(conn, NAME)
    rng = random.Random(1)
    partial_states = 0
    try:
        for attempt in range(5):
            child = _run_child(location, corpus, tmp_path / "cache")
            assert child.stdout.readline().strip() == "started"
            if attempt == 4:  # the last kill lands while the indexes are built
                _read_until(child, "start updating indexes")
                time.sleep(rng.uniform(0.0, 0.05))
            else:
                for _ in range(rng.randint(1, 25)):
                    _read_until(child, "commit")
                time.sleep(rng.uniform(0.0, 0.01))
            child.send_signal(signal.SIGKILL)
            child.wait()
            n_docs = _check(location, n_files)
            partial_states += 0 < n_docs < n_files
        assert partial_states >= 4, "kills did not land mid-ingest; the test proves nothing"
        child = _run_child(location, corpus, tmp_path / "cache")
        assert child.communicate(timeout=300)[0].splitlines()[-1] == "done"
        assert _check(location, n_files) == n_files
        with Collection.open(location) as crashed, \
                Collection.create(tmp_path / "clean", encoder="hashing-1024") as clean:
            clean.add([corpus])
            assert crashed.backend.count_chunks() == clean.backend.count_chunks()
            assert crashed.backend.generation > 5  # many commits, each one transaction
            for query in ("marker17", "marker221 retrieval"):
                for mode in ("bm25",):  # dense is HNSW here, approximate
                    a = [(h.doc_id, h.start) for h in crashed.search(query, k=5, mode=mode)]
                    b = [(h.doc_id, h.start) for h in clean.search(query, k=5, mode=mode)]
                    assert a == b, (query, mode)
    finally:
        with pg.connect(pg_url) as conn:
            pg.drop_schema(conn, NAME)
