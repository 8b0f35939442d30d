"""ragmix reembed: a copy of a collection under another encoder, resumable, source untouched."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from ragmix.encoders import HashingEncoder
from ragmix.errors import CollectionError
from ragmix.store import Collection
from ragmix.store.reembed import reembed


class FailingEncoder(HashingEncoder):
    """Hashing vectors, but the n-th call to encode_documents raises (a crash mid-run)."""

    def __init__(self, dim: int, fail_on: int) -> None:
        super().__init__(dim)
        self.calls, self.fail_on = 0, fail_on

    def encode_documents(self, texts, *, batch_size=64, progress=None):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("power cut")
        return super().encode_documents(texts, batch_size=batch_size, progress=progress)


@pytest.fixture
def source(tmp_path, corpus):
    with Collection.create(tmp_path / "src", encoder="hashing-64") as col:
        col.add([corpus])
    return tmp_path / "src"


def test_reembed_copies_with_the_new_encoder_and_leaves_the_source(source, tmp_path):
    with reembed(source, tmp_path / "new", "hashing-128", batch=4) as col:
        assert col.manifest.encoder == "hashing-128" and col.manifest.dim == 128
        ids = col.store.chunk_ids()
        texts = [t for _, part in col.store.iter_texts() for t in part]
        expected = HashingEncoder(128).encode_documents(texts)
        np.testing.assert_allclose(col.store.embeddings(ids, 128), expected, rtol=1e-6)
        assert col.search("marker3", k=1, mode="dense")[0].doc_id.endswith("doc0003.md")
    with Collection.open(source) as old:
        assert old.manifest.encoder == "hashing-64"
        assert old.store.embeddings(old.store.chunk_ids()[:1], 64).shape == (1, 64)


def test_an_interrupted_reembed_resumes(source, tmp_path):
    with pytest.raises(RuntimeError, match="power cut"):
        reembed(source, tmp_path / "new", FailingEncoder(128, fail_on=2), batch=4)
    with pytest.raises(CollectionError, match="not a ragmix collection"):
        Collection.open(tmp_path / "new")  # half done: not searchable
    resumed = FailingEncoder(128, fail_on=0)
    with reembed(source, tmp_path / "new", resumed, batch=4) as col:
        n = col.store.count_chunks()
        assert resumed.calls == -(-(n - 4) // 4)  # the first batch was not redone
        texts = [t for _, part in col.store.iter_texts() for t in part]
        np.testing.assert_allclose(col.store.embeddings(col.store.chunk_ids(), 128),
                                   HashingEncoder(128).encode_documents(texts), rtol=1e-6)
    with pytest.raises(CollectionError, match="already holds a collection"):
        reembed(source, tmp_path / "new", "hashing-128")


def test_cli_reembed(source, tmp_path):
    from ragmix.cli.main import cli

    result = CliRunner().invoke(cli, ["reembed", "-c", str(source), "--encoder", "hashing-512",
                                      "--out", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    assert "re-embedded" in result.output
    result = CliRunner().invoke(cli, ["search", "marker2", "-c", str(tmp_path / "new"), "-k", "1",
                                      "-r", "dense", "--json"])
    assert result.exit_code == 0 and "doc0002.md" in result.output


def test_resuming_with_another_encoder_is_refused(source, tmp_path):
    with pytest.raises(RuntimeError, match="power cut"):
        reembed(source, tmp_path / "new", FailingEncoder(128, fail_on=2), batch=4)
    with pytest.raises(CollectionError, match="unfinished re-embedding"):
        reembed(source, tmp_path / "new", "hashing-256", batch=4)
