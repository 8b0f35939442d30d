"""The token store: round trip, reopening, torn writes, one writer at a time, refusing another
model's store; the late-interaction scorer reading and filling it."""

from __future__ import annotations

import fcntl
import inspect
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from reranker_contract import QUERY, TEXTS, ScorerContract

from ragmix.errors import BadInputError
from ragmix.rerank.token_store import (DATA_FILE, INDEX_FILE, LOCK_FILE, TokenStore,
                                       TokenStoreBusyError, passage_key)

DIM = 16


def vectors_for(i, dim):
    """Item ``i``'s unit token vectors, (T, dim) with T in 1..9: the same in every process."""
    rng = np.random.default_rng(i)
    v = rng.normal(size=(1 + i % 9, dim))  # (T, dim)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def key_for(i):
    return passage_key(f"passage {i}", 256)


def items(numbers, dim=DIM):
    return [(key_for(i), vectors_for(i, dim)) for i in numbers]


def open_store(path, **kw):
    return TokenStore(path, dim=kw.pop("dim", DIM), model_fingerprint=kw.pop("fp", "model-a"),
                      model=kw.pop("model", "tiny"), **kw)


def assert_holds(store, numbers):
    got = store.get([key_for(i) for i in numbers])
    for i, vectors in zip(numbers, got):
        assert vectors is not None, f"passage {i} is missing"
        np.testing.assert_array_equal(vectors, vectors_for(i, DIM).astype(np.float16))


def test_round_trip_in_float16(tmp_path):
    with open_store(tmp_path / "s") as store:
        assert len(store) == 0 and store.nbytes == 0
        assert store.get([key_for(0)]) == [None]
        assert store.put(items(range(10))) == 10
        got = store.get([key_for(3), passage_key("never stored", 256), key_for(7)])
        assert got[1] is None
        for i, vectors in ((3, got[0]), (7, got[2])):
            expected = vectors_for(i, DIM)
            assert vectors.dtype == np.float16 and vectors.shape == expected.shape
            np.testing.assert_allclose(vectors, expected, atol=2**-11)  # |x| <= 1: half an ulp
        rows = sum(len(vectors_for(i, DIM)) for i in range(10))
        assert len(store) == 10 and store.nbytes == rows * DIM * 2
        # stored keys keep their first vectors; a batch's repeats count once
        assert store.put([(key_for(3), np.zeros((2, DIM))), *items([10, 10])]) == 1
        assert_holds(store, [3, 10])
        assert store.has([key_for(10), key_for(11)]) == [True, False]


def test_reopen_and_a_second_handle_see_the_entries(tmp_path):
    with open_store(tmp_path / "s") as store:
        store.put(items(range(5)))
        with open_store(tmp_path / "s") as other:  # open while the first still is
            assert_holds(other, range(5))
            other.put(items(range(5, 8)))
        assert_holds(store, range(8))  # the map grows to the other's rows
    with open_store(tmp_path / "s") as store:
        assert len(store) == 8
        assert_holds(store, range(8))


def test_vectors_written_without_their_entries_are_cut_away(tmp_path, monkeypatch):
    import ragmix.rerank.token_store as token_store

    store = open_store(tmp_path / "s")
    store.put(items(range(4)))
    good = store.nbytes

    def crash(fd):
        raise KeyboardInterrupt("killed between the vectors' write and their entries")

    monkeypatch.setattr(token_store.os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        store.put(items(range(4, 8)))
    monkeypatch.undo()
    data = tmp_path / "s" / DATA_FILE
    with open(data, "ab") as fh:
        fh.write(b"\x01" * (DIM * 2 + 7))  # and half a row more
    assert data.stat().st_size > good and len(store) == 4
    assert store.get([key_for(5)]) == [None]
    store.close()
    with open_store(tmp_path / "s") as store:  # opening with no writer about cuts the tail
        assert data.stat().st_size == good == store.nbytes
        assert_holds(store, range(4))
        assert store.put(items(range(4, 8))) == 4
        assert_holds(store, range(8))


def test_an_entry_without_its_vectors_is_ignored_then_dropped(tmp_path):
    store = open_store(tmp_path / "s")
    store.put(items(range(6)))
    data = tmp_path / "s" / DATA_FILE
    last = len(vectors_for(5, DIM))
    os.truncate(data, data.stat().st_size - (last - 1) * DIM * 2 - 5)  # mid-row of passage 5
    assert store.get([key_for(5)]) == [None] and len(store) == 5
    assert_holds(store, range(5))
    assert store.put(items([6])) == 1  # the writer drops passage 5's entry and cuts the file
    with sqlite3.connect(tmp_path / "s" / INDEX_FILE) as conn:
        assert conn.execute("SELECT count(*) FROM passages").fetchone() == (6,)
    assert store.put(items([5])) == 1
    assert_holds(store, range(7))
    store.close()


def test_a_second_writer_waits_for_the_lock_then_gives_up(tmp_path):
    store = open_store(tmp_path / "s", lock_timeout=0.2)
    store.put(items(range(3)))
    other = open(tmp_path / "s" / LOCK_FILE, "a")  # another writer mid-batch
    fcntl.flock(other, fcntl.LOCK_EX)
    start = time.monotonic()
    with pytest.raises(TokenStoreBusyError, match="being written by another process.*0.2 s"):
        store.put(items([3]))
    assert time.monotonic() - start >= 0.2
    assert_holds(store, range(3))  # readers never wait
    with open_store(tmp_path / "s") as reader:  # nor does opening an existing store
        assert len(reader) == 3
    store.lock_timeout = 5.0
    threading.Timer(0.3, fcntl.flock, (other, fcntl.LOCK_UN)).start()
    start = time.monotonic()
    assert store.put(items([3])) == 1  # waits for the release, then writes
    assert 0.25 <= time.monotonic() - start < 5.0
    other.close()
    assert_holds(store, range(4))
    store.close()


WRITER = """
import sys
import numpy as np
from ragmix.rerank.token_store import TokenStore, passage_key
""" + inspect.getsource(vectors_for) + inspect.getsource(key_for) + """
path, first, last, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = TokenStore(path, dim=16, model_fingerprint="model-a", model="tiny")
for start in range(first, last, size):
    store.put([(key_for(i), vectors_for(i, 16)) for i in range(start, min(start + size, last))])
    print(start, flush=True)
"""


def writer(path, first, last, size):
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(first), str(last),
                             str(size)], stdout=subprocess.PIPE, text=True)


def test_two_processes_write_one_store(tmp_path):
    open_store(tmp_path / "s").close()
    procs = [writer(tmp_path / "s", 0, 600, 20), writer(tmp_path / "s", 300, 900, 30)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    with open_store(tmp_path / "s") as store:
        assert len(store) == 900
        assert_holds(store, range(900))
        rows = sum(len(vectors_for(i, DIM)) for i in range(900))
        # the overlap was written once: a writer skips keys another stored first
        assert store.nbytes == (tmp_path / "s" / DATA_FILE).stat().st_size == rows * DIM * 2


def test_a_writer_killed_mid_write_leaves_a_usable_store(tmp_path):
    proc = writer(tmp_path / "s", 0, 10**6, 50)
    proc.stdout.readline()  # a first batch is committed
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    with open_store(tmp_path / "s") as store:
        n = len(store)
        assert n >= 50 and n % 50 == 0  # whole batches only
        assert_holds(store, range(n))
        assert store.get([key_for(n)]) == [None]
        assert (tmp_path / "s" / DATA_FILE).stat().st_size == store.nbytes
        assert store.put(items(range(n, n + 3))) == 3
        assert_holds(store, range(n + 3))


def test_another_model_or_width_or_folder_is_refused(tmp_path):
    open_store(tmp_path / "s", fp="a" * 64, model="late-interaction:minilm float32").close()
    with pytest.raises(BadInputError) as error:
        open_store(tmp_path / "s", fp="b" * 64, model="late-interaction:mine float32")
    message = str(error.value)
    for part in ("a" * 16, "b" * 16, "minilm float32", "mine float32", "another store directory",
                 "delete"):
        assert part in message
    with pytest.raises(BadInputError, match="holds 16-d vectors.*not the 8-d vectors"):
        open_store(tmp_path / "s", fp="a" * 64, dim=8)
    (tmp_path / "col").mkdir()
    (tmp_path / "col" / "store.sqlite").write_text("")
    with pytest.raises(BadInputError, match="holds no token store.*store.sqlite"):
        open_store(tmp_path / "col")
    (tmp_path / "s" / "meta.json").write_text("{not json")
    with pytest.raises(BadInputError, match="not a token store's metadata.*delete"):
        open_store(tmp_path / "s")


def test_bad_keys_and_vectors_are_named(tmp_path):
    with open_store(tmp_path / "s") as store:
        with pytest.raises(BadInputError, match="32 bytes"):
            store.get(["passage 1"])
        with pytest.raises(BadInputError, match=r"must be \(T, 16\), got shape \(3, 8\)"):
            store.put([(key_for(1), np.zeros((3, 8)))])
        with pytest.raises(BadInputError, match="finite in float16"):
            store.put([(key_for(1), np.full((1, DIM), 1e6))])
        assert len(store) == 0
    with pytest.raises(BadInputError, match="closed"):
        store.get([key_for(1)])
    with pytest.raises(BadInputError, match="dim must be an integer > 0, got 0"):
        open_store(tmp_path / "t", dim=0)


# -- the scorer with a store ------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_folder(torch, tmp_path_factory):
    from test_rerank_late_interaction import tiny_bert_folder

    return tiny_bert_folder(torch, tmp_path_factory.mktemp("tiny-bert"))


def scorer_for(folder, store=None):
    from ragmix.rerank.late_interaction import LateInteractionScorer

    return LateInteractionScorer(folder, dtype="float32", batch_size=2, store=store)


def count_encodes(scorer, monkeypatch):
    encoded = []
    real = scorer._encode
    monkeypatch.setattr(scorer, "_encode", lambda texts, **kw: encoded.extend(texts) or
                        real(texts, **kw))
    return encoded


class TestStoredLateInteractionContract(ScorerContract):
    @pytest.fixture
    def scorer(self, tiny_folder, tmp_path):
        return scorer_for(tiny_folder, tmp_path / "store")


def test_scores_with_a_store_equal_those_without_to_float16(tiny_folder, tmp_path):
    from ragmix.rerank.maxsim import maxsim

    plain, stored = scorer_for(tiny_folder), scorer_for(tiny_folder, tmp_path / "store")
    query = plain.query_vectors(QUERY)  # (Tq, D)
    first, again = stored.score(QUERY, TEXTS), stored.score(QUERY, TEXTS)
    np.testing.assert_array_equal(first, again)  # fresh or stored, the same float16 vectors
    # each dot moves at most 2**-11 (unit vectors, half an ulp a component), a sum of Tq maxes
    np.testing.assert_allclose(first, plain.score(QUERY, TEXTS), rtol=0,
                               atol=len(query) * 2**-11 + 1e-5)
    for text, vectors in zip(TEXTS, plain.passage_vectors(TEXTS)):
        rounded = vectors.astype(np.float16).astype(np.float32)[None]  # (1, T, D)
        np.testing.assert_allclose(stored.score(QUERY, [text]),
                                   maxsim(query, rounded, np.ones(rounded.shape[:2], bool)),
                                   rtol=1e-6)


def test_the_store_fills_on_score_and_serves_another_scorer(tiny_folder, tmp_path, monkeypatch):
    first = scorer_for(tiny_folder, tmp_path / "store")
    scores = first.score(QUERY, TEXTS)
    assert len(first.store) == len(TEXTS)
    second = scorer_for(tiny_folder, tmp_path / "store")
    encoded = count_encodes(second, monkeypatch)
    np.testing.assert_array_equal(second.score(QUERY, TEXTS), scores)
    assert encoded == [QUERY]  # the passages came from the store
    second.score(QUERY, [TEXTS[0], "Kelm is small."])
    assert encoded == [QUERY, QUERY, "Kelm is small."] and len(first.store) == len(TEXTS) + 1


def test_warm_fills_the_store_and_reports_progress(tiny_folder, tmp_path, monkeypatch):
    from ragmix.rerank import late_interaction

    monkeypatch.setattr(late_interaction, "WARM_BATCHES", 1)  # batches of batch_size=2
    scorer = scorer_for(tiny_folder, tmp_path / "store")
    scorer.score(QUERY, TEXTS[:1])
    calls = []
    assert scorer.warm([*TEXTS, *TEXTS], progress=lambda done, total: calls.append((done, total))) \
        == len(TEXTS) - 1
    assert calls == [(1, 5), (3, 5), (5, 5)]
    assert len(scorer.store) == len(TEXTS)
    encoded = count_encodes(scorer_for(tiny_folder, tmp_path / "store"), monkeypatch)
    assert scorer.warm(TEXTS) == 0 and encoded == []
    with pytest.raises(BadInputError, match="store=DIR"):
        scorer_for(tiny_folder).warm(TEXTS)


def test_load_scorer_passes_the_store_to_late_interaction_only(tiny_folder, tmp_path):
    from ragmix.rerank import load_reranker, load_scorer

    scorer = load_scorer("late-interaction", model=tiny_folder, dtype="float32",
                         store=tmp_path / "store")
    assert scorer.store is not None and scorer.store.directory == tmp_path / "store"
    reranker = load_reranker("late-interaction", model=tiny_folder, dtype="float32",
                             store=tmp_path / "store")
    assert reranker.scorer.store is not None
    with pytest.raises(BadInputError, match="cross-encoder reranker .* nothing to store"):
        load_scorer("cross-encoder", model=tiny_folder, store=tmp_path / "store")


def test_the_fingerprint_follows_weights_settings_and_dtype(tiny_folder, tmp_path):
    import shutil

    from ragmix.rerank.late_interaction import model_fingerprint

    base = model_fingerprint(tiny_folder, dtype="float32")
    assert base == model_fingerprint(tiny_folder, dtype="float32") and len(base) == 64
    assert model_fingerprint(tiny_folder, dtype="bfloat16") != base
    copy = shutil.copytree(tiny_folder, tmp_path / "copy")
    assert model_fingerprint(copy, dtype="float32") == base  # bytes, not paths
    (copy / "late_interaction.json").write_text(json.dumps(
        {"dim": None, "query_length": 32, "skip_punctuation": False}))
    assert model_fingerprint(copy, dtype="float32") != base
    (copy / "late_interaction.json").unlink()
    weights = next(copy.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    assert model_fingerprint(copy, dtype="float32") != base
    with pytest.raises(BadInputError, match=f"{base[:16]}.*another store directory"):
        scorer_for(copy, scorer_for(tiny_folder, tmp_path / "store").store.directory)
