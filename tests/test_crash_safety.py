"""kill -9 during indexing never corrupts a collection, and re-running finishes the job."""

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
from ragmix.store import Collection

CHILD = """
import sys
from ragmix.store import Collection

class Report:  # tells the parent about every commit, so kills land mid-ingest
    def start(self, stage, total):
        print("start", stage, flush=True)
    def advance(self, stage, n=1):
        if stage == "embedding":
            print("commit", flush=True)

col = Collection.open_or_create(sys.argv[1], encoder="hashing-1024", index=sys.argv[3])
print("started", flush=True)
col.add([sys.argv[2]], commit_chunks=4, progress=Report())
print("done", flush=True)
"""


def _run_child(col_dir: Path, corpus: Path, kind: str) -> subprocess.Popen:
    src = str(Path(__file__).resolve().parent.parent / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(col_dir), str(corpus), kind],
        stdout=subprocess.PIPE, env=env, text=True,
    )


def _read_until(child: subprocess.Popen, line: str) -> None:
    for got in child.stdout:
        if got.strip() == line:
            return
    raise AssertionError(f"child ended before printing {line!r}")


def _check(col_dir: Path, n_files: int) -> int:
    """Open after a crash: views agree with SQLite and no document is half-stored."""
    with Collection.open(col_dir) as col:
        want = col.store.chunk_ids()
        assert np.array_equal(np.sort(col.views.dense(persist=True).ids()), want)
        assert np.array_equal(np.sort(np.asarray(col.views.bm25(persist=True).ids)), want)
        for doc in col.documents():
            text = Path(doc.source).read_text()
            assert doc.n_chunks == len(col.chunker.chunk(doc.doc_id, text))
        n_docs = col.store.count_documents()
        assert n_docs <= n_files
        return n_docs


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_kill_minus_nine_mid_ingest(tmp_path: Path, kind: str) -> None:
    n_files = 400
    corpus = write_corpus(tmp_path / "corpus", n_files, words_per_file=120)
    col_dir = tmp_path / "col"
    rng = random.Random(1)
    partial_states = 0
    for attempt in range(6):
        child = _run_child(col_dir, corpus, kind)
        assert child.stdout.readline().strip() == "started"
        if attempt == 5:  # the last kill lands while the indexes are being written
            _read_until(child, "start updating indexes")
            time.sleep(rng.uniform(0.0, 0.05))
        else:  # the others after a random number of commits, while more are to come
            for _ in range(rng.randint(1, 30)):
                _read_until(child, "commit")
            time.sleep(rng.uniform(0.0, 0.01))
        child.send_signal(signal.SIGKILL)
        child.wait()
        n_docs = _check(col_dir, n_files)
        partial_states += 0 < n_docs < n_files
    assert partial_states >= 5, "kills did not land mid-ingest; the test proves nothing"
    child = _run_child(col_dir, corpus, kind)
    assert child.communicate(timeout=300)[0].splitlines()[-1] == "done"
    assert _check(col_dir, n_files) == n_files
    # The same corpus indexed in one clean run gives the same passages.
    with Collection.open(col_dir) as crashed, \
            Collection.create(tmp_path / "clean", encoder="hashing-1024") as clean:
        clean.add([corpus])
        assert crashed.store.count_chunks() == clean.store.count_chunks()
        for query in ("marker17", "marker321 retrieval"):
            a = [(h.doc_id, h.start) for h in crashed.search(query, k=5, mode="bm25")]
            b = [(h.doc_id, h.start) for h in clean.search(query, k=5, mode="bm25")]
            assert a == b
