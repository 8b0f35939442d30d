"""ragmix reembed and PostgreSQL: refused with the ragmix copy round trip, which works."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from ragmix.cli.main import cli
from ragmix.encoders import HashingEncoder
from ragmix.errors import CollectionError
from ragmix.store import Collection, pg
from ragmix.store.copy import copy_collection
from ragmix.store.pg.home import location_of
from ragmix.store.reembed import reembed


@pytest.fixture
def pg_source(pg_url, corpus, monkeypatch, tmp_path):
    monkeypatch.setenv("RAGMIX_CACHE", str(tmp_path / "cache"))
    location = location_of(pg_url.replace("postgres@", "postgres:secret@"), "to_reembed")
    with Collection.create(location, encoder="hashing-64") as col:
        col.add([corpus])
    yield location
    with pg.connect(pg_url) as conn:
        for name in ("to_reembed", "reembedded"):
            pg.drop_schema(conn, name)


def test_reembed_refuses_postgresql_and_names_the_copy_round_trip(pg_source, tmp_path):
    with pytest.raises(CollectionError, match="source .* is in PostgreSQL.*ragmix copy") as exc:
        reembed(pg_source, tmp_path / "new", "hashing-128")
    assert "secret" not in str(exc.value)
    with pytest.raises(CollectionError, match="target .* is in PostgreSQL"):
        reembed(tmp_path / "anywhere", pg_source, "hashing-128")
    assert not (tmp_path / "new").exists()
    result = CliRunner().invoke(cli, ["reembed", "-c", pg_source, "--encoder", "hashing-128",
                                      "--out", str(tmp_path / "new")])
    assert result.exit_code != 0 and "ragmix copy" in result.output


def test_the_round_trip_the_error_names_reembeds_a_postgresql_collection(pg_source, pg_url,
                                                                         tmp_path):
    copy_collection(pg_source, tmp_path / "tmp-col")
    reembed(tmp_path / "tmp-col", tmp_path / "tmp-new", "hashing-128", batch=4).close()
    back = location_of(pg_url, "reembedded")
    copy_collection(tmp_path / "tmp-new", back)
    with Collection.open(back) as col:
        assert col.manifest.encoder == "hashing-128"
        ids = col.backend.chunk_ids()
        rows = col.backend.chunk_rows(ids.tolist())
        expected = HashingEncoder(128).encode_documents([rows[int(i)].text for i in ids])
        np.testing.assert_allclose(col.backend.embeddings(ids), expected, rtol=1e-6)
        assert col.search("marker3", k=1, mode="dense")[0].doc_id.endswith("doc0003.md")
