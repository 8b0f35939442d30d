"""Collection behaviour: incremental re-index, delete, view agreement, errors."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from ragmix.encoders import HashingEncoder
from ragmix.errors import (
    BadInputError,
    CollectionError,
    EncoderMismatchError,
    MissingExtraError,
)
from ragmix.store import Collection


def assert_consistent(col: Collection) -> None:
    """SQLite, FAISS and BM25 describe exactly the same chunks."""
    want = col.store.chunk_ids()
    dense = np.sort(col.views.dense(persist=False).ids())
    bm25 = np.sort(np.asarray(col.views.bm25(persist=False).ids))
    assert np.array_equal(dense, want)
    assert np.array_equal(bm25, want)


def test_add_then_search_finds_marker(collection: Collection, corpus: Path) -> None:
    report = collection.add([corpus])
    assert (report.added, report.updated, report.unchanged) == (12, 0, 0)
    assert report.chunks == collection.store.count_chunks() > 12
    for mode in ("dense", "bm25", "hybrid"):
        hits = collection.search("marker7", k=3, mode=mode)
        assert hits[0].source.endswith("doc0007.md"), mode
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
        assert abs(sum(h.prob for h in hits) - 1.0) < 1e-6
        assert hits[0].text == Path(hits[0].source).read_text()[hits[0].start : hits[0].end]
    assert_consistent(collection)


def test_reindex_is_incremental(collection: Collection, corpus: Path) -> None:
    collection.add([corpus])
    chunks_before = collection.store.count_chunks()
    again = collection.add([corpus])
    assert (again.added, again.updated, again.unchanged, again.chunks) == (0, 0, 12, 0)
    (corpus / "doc0003.md").write_text("# Changed\n\nbrand new zebra words here\n")
    (corpus / "extra.md").write_text("# Extra\n\nan extra giraffe file\n")
    third = collection.add([corpus])
    assert (third.added, third.updated, third.unchanged) == (1, 1, 11)
    assert collection.search("zebra", k=1, mode="bm25")[0].source.endswith("doc0003.md")
    assert collection.search("marker3", k=5, mode="bm25") == []  # old text fully replaced
    assert collection.store.count_documents() == 13
    assert collection.store.count_chunks() < chunks_before + 3
    assert_consistent(collection)


def test_delete_removes_from_every_view(collection: Collection, corpus: Path) -> None:
    collection.add([corpus])
    removed = collection.delete(["*doc0005.md"])
    assert len(removed) == 1 and removed[0].endswith("doc0005.md")
    for mode in ("dense", "bm25", "hybrid"):
        assert all(not h.source.endswith("doc0005.md")
                   for h in collection.search("marker5", k=20, mode=mode))
    assert collection.delete(["*nothing*"]) == []
    assert_consistent(collection)


def test_reopen_after_changes(tmp_path: Path, corpus: Path) -> None:
    with Collection.create(tmp_path / "c", encoder="hashing-1024", index="hnsw") as col:
        col.add([corpus])
        col.delete(["*doc0001.md"])
        expected = [h.chunk_id for h in col.search("marker2", k=5, mode="hybrid")]
    with Collection.open(tmp_path / "c") as col:
        assert [h.chunk_id for h in col.search("marker2", k=5, mode="hybrid")] == expected
        assert col.views.is_current("dense") and col.views.is_current("bm25")
        assert_consistent(col)


def test_stale_views_are_rebuilt_from_sqlite(tmp_path: Path, corpus: Path) -> None:
    with Collection.create(tmp_path / "c", encoder="hashing-1024") as col:
        col.add([corpus])
    (tmp_path / "c" / "dense.faiss").unlink()
    (tmp_path / "c" / "views.json").write_text("{}")
    with Collection.open(tmp_path / "c") as col:
        assert col.search("marker4", k=1, mode="dense")[0].source.endswith("doc0004.md")
        assert_consistent(col)


def test_source_filter(collection: Collection, corpus: Path) -> None:
    collection.add([corpus])
    hits = collection.search("marker1 marker2", k=10, mode="hybrid", source="*doc0002.md")
    assert hits and all(h.source.endswith("doc0002.md") for h in hits)
    assert collection.search("marker1", k=3, source="*no-such-file*") == []


def test_encoder_mismatch_is_a_clear_error(tmp_path: Path) -> None:
    Collection.create(tmp_path / "c", encoder="hashing-1024").close()
    with pytest.raises(EncoderMismatchError, match="hashing-1024"):
        Collection.open(tmp_path / "c", encoder=HashingEncoder(32))
    with Collection.open(tmp_path / "c", encoder=HashingEncoder(1024)) as col:
        assert col.manifest.dim == 1024


def test_bad_inputs(tmp_path: Path, collection: Collection) -> None:
    with pytest.raises(CollectionError, match="not a ragmix collection"):
        Collection.open(tmp_path / "missing")
    with pytest.raises(CollectionError, match="already holds"):
        Collection.create(collection.directory, encoder="hashing-1024")
    with pytest.raises(BadInputError, match="k must be > 0"):
        collection.search("x", k=0)
    with pytest.raises(BadInputError, match="mode must be one of"):
        collection.search("x", mode="magic")
    with pytest.raises(BadInputError, match="empty"):
        collection.search("   ")
    with pytest.raises(BadInputError, match="index must be one of"):
        Collection.create(tmp_path / "x", encoder="hashing-8", index="annoy")


def test_second_writer_is_refused(collection: Collection, corpus: Path) -> None:
    other = Collection.open(collection.directory)
    with collection._write_lock():
        with pytest.raises(CollectionError, match="another process"):
            other.add([corpus])
    other.close()


def test_skipped_files_are_reported(collection: Collection, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.txt").write_text("some good text about passages")
    (folder / "empty.txt").write_text("")
    (folder / "blob.bin").write_bytes(b"\x00\x01")
    report = collection.add([folder])
    assert report.added == 1
    reasons = {Path(s.source).name: s.reason for s in report.skipped}
    assert set(reasons) == {"empty.txt", "blob.bin"}


def test_unreadable_view_files_are_rebuilt(tmp_path: Path, corpus: Path) -> None:
    with Collection.create(tmp_path / "c", encoder="hashing-1024") as col:
        col.add([corpus])
    (tmp_path / "c" / "dense.faiss.json").unlink()  # as if killed between the two writes
    for f in (tmp_path / "c" / "bm25").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with Collection.open(tmp_path / "c") as col:
        for mode in ("dense", "bm25"):
            assert col.search("marker6", k=1, mode=mode)[0].source.endswith("doc0006.md")
        assert_consistent(col)
        col.add([corpus])  # and the collection stays writable


def test_reader_sees_writes_of_another_handle(tmp_path: Path, corpus: Path) -> None:
    writer = Collection.create(tmp_path / "c", encoder="hashing-1024")
    writer.add([corpus])
    reader = Collection.open(tmp_path / "c")
    assert reader.search("marker2", k=1, mode="bm25")  # views now loaded in the reader
    writer.delete(["*doc0002.md"])
    (corpus / "doc0002.md").unlink()  # else the next add puts it back
    (corpus / "new.md").write_text("# New\n\nokapi unicorn\n")
    writer.add([corpus])
    for mode in ("dense", "bm25", "hybrid"):
        assert all(not h.source.endswith("doc0002.md") for h in reader.search("marker2", k=20, mode=mode))
        assert reader.search("unicorn", k=1, mode=mode)[0].source.endswith("new.md")
    assert_consistent(reader)
    writer.close()
    reader.close()


def test_a_later_duplicate_id_wins(collection: Collection) -> None:
    from ragmix.types import Document

    def doc(text: str) -> Document:
        return Document(doc_id="same", text=text, source="rows.jsonl", content_hash=text)

    collection.add_documents([doc("first version alpha"), doc("second version beta")])
    assert collection.search("beta", k=1, mode="bm25")[0].text == "second version beta"
    report = collection.add_documents([doc("third gamma"), doc("second version beta")])
    assert report.unchanged == 1 and report.updated == 0
    assert collection.search("beta", k=1, mode="bm25")[0].text == "second version beta"
    assert collection.store.count_documents() == 1


def test_searcher_fixes_fusion_and_source(collection, corpus) -> None:
    collection.add([corpus])
    bound = collection.searcher(fusion="rrf", source="*doc0001*")
    hits = bound.search("marker1", 3, mode="hybrid")
    assert hits == collection.search("marker1", 3, mode="hybrid", fusion="rrf",
                                     source="*doc0001*")
    assert hits and all("doc0001" in h.source for h in hits)


def _edited(manifest: dict, **changes) -> str:
    return json.dumps({**manifest, **changes})


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda m: '{"encoder": "hashing-64"}', "missing key(s) 'dim', 'chunker', 'index'"),
    (lambda m: '{"encoder": "hashing-64", "dim": ', "not valid JSON"),
    (lambda m: "[1, 2]", "expected a JSON object, got [1, 2]"),
    (lambda m: _edited(m, dim="64"), "'dim' must be a positive integer, got \"64\""),
    (lambda m: _edited(m, dim=True), "'dim' must be a positive integer, got true"),
    (lambda m: _edited(m, dim=0), "'dim' must be a positive integer, got 0"),
    (lambda m: _edited(m, index=["flat"]), "'index' must be an object"),
    (lambda m: _edited(m, index={"nprobe": 8}), "'index' needs a string 'kind'"),
    (lambda m: _edited(m, chunker={}), "'chunker' needs a string 'name'"),
    (lambda m: _edited(m, colour="blue"), "unknown key(s) 'colour'"),
])
def test_corrupt_manifest_names_the_file_and_the_fault(tmp_path: Path, edit, problem) -> None:
    Collection.create(tmp_path / "c", encoder="hashing-64").close()
    path = tmp_path / "c" / "manifest.json"
    path.write_text(edit(json.loads(path.read_text())))
    with pytest.raises(CollectionError) as caught:
        Collection.open(tmp_path / "c")
    message = str(caught.value)
    assert f"corrupt manifest {str(path)!r}: {problem}" in message
    assert "re-index into a new collection" in message and "\n" not in message


def test_manifest_that_is_not_text(tmp_path: Path) -> None:
    Collection.create(tmp_path / "c", encoder="hashing-64").close()
    (tmp_path / "c" / "manifest.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CollectionError, match="manifest.json': not UTF-8 text; restore"):
        Collection.open(tmp_path / "c")


def test_newer_format_version_is_named_before_its_keys(tmp_path: Path) -> None:
    Collection.create(tmp_path / "c", encoder="hashing-64").close()
    (tmp_path / "c" / "manifest.json").write_text('{"format_version": 2, "layout": "v2"}')
    with pytest.raises(CollectionError, match="format version 2, this ragmix reads version 1"):
        Collection.open(tmp_path / "c")


def test_corrupt_store_names_the_file_and_the_fix(tmp_path: Path, corpus: Path) -> None:
    with Collection.create(tmp_path / "c", encoder="hashing-64") as col:
        col.add([corpus])
    store = tmp_path / "c" / "store.sqlite"
    store.write_bytes(b"this is not SQLite " * 200)
    with pytest.raises(CollectionError) as caught:
        Collection.open(tmp_path / "c")
    message = str(caught.value)
    assert str(store) in message and "file is not a database" in message
    assert "restore it from a backup, or re-index into a new collection" in message


@pytest.mark.parametrize(("module", "mode", "extra"), [("bm25s", "bm25", "bm25"),
                                                       ("faiss", "dense", "faiss")])
def test_missing_extra_is_raised_without_a_rebuild_warning(
    tmp_path: Path, corpus: Path, monkeypatch, caplog, module: str, mode: str, extra: str,
) -> None:
    with Collection.create(tmp_path / "c", encoder="hashing-64") as col:
        col.add([corpus])  # saves both views, so opening loads them from disk
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: import raises
    with Collection.open(tmp_path / "c") as col, caplog.at_level(logging.WARNING):
        with pytest.raises(MissingExtraError, match=rf"pip install 'ragmix\[{extra}\]'"):
            col.search("marker6", k=1, mode=mode)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
