"""The ragmix command line, through click's CliRunner and one real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from ragmix.cli.main import cli


def _index(runner: CliRunner, col: Path, *paths: Path, extra: tuple[str, ...] = ()):
    return runner.invoke(cli, ["index", *map(str, paths), "-c", str(col),
                               "--encoder", "hashing-1024", *extra])


def test_index_search_info_delete(tmp_path: Path, corpus: Path) -> None:
    runner = CliRunner()
    col = tmp_path / "col"
    (corpus / "bad.bin").write_bytes(b"\x00\xff")
    result = _index(runner, col, corpus)
    assert result.exit_code == 0, result.output
    assert "12 new" in result.output and "skipped 1 file" in result.output
    assert "bad.bin" in result.output

    again = _index(runner, col, corpus)
    assert "0 new, 0 updated, 12 unchanged" in again.output

    found = runner.invoke(cli, ["search", "marker3", "-c", str(col), "--json", "-k", "2"])
    assert found.exit_code == 0, found.output
    hits = json.loads(found.output)
    assert len(hits) == 2 and hits[0]["source"].endswith("doc0003.md")
    assert {"score", "prob", "rank", "start", "end", "text"} <= set(hits[0])

    table = runner.invoke(cli, ["search", "marker3", "-c", str(col), "--mode", "bm25"])
    assert table.exit_code == 0, table.output
    assert "Document 3" in table.output  # the title column

    info = json.loads(runner.invoke(cli, ["info", "-c", str(col), "--json"]).output)
    assert info["documents"] == 12 and info["encoder"] == "hashing-1024"

    deleted = runner.invoke(cli, ["delete", "*doc0003.md", "-c", str(col)])
    assert deleted.exit_code == 0 and "deleted 1" in deleted.output
    gone = json.loads(runner.invoke(cli, ["search", "marker3", "-c", str(col), "--json",
                                          "--mode", "bm25"]).output)
    assert all(not h["source"].endswith("doc0003.md") for h in gone)


def test_errors_are_one_line_and_nonzero(tmp_path: Path, corpus: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["search", "x", "-c", str(tmp_path / "nope")])
    assert missing.exit_code == 1
    assert "not a ragmix collection" in missing.output and "Traceback" not in missing.output
    bad_k = runner.invoke(cli, ["search", "x", "-c", str(tmp_path), "-k", "0"])
    assert bad_k.exit_code == 2
    col = tmp_path / "col"
    _index(runner, col, corpus)
    nothing = runner.invoke(cli, ["delete", "*zzz*", "-c", str(col)])
    assert nothing.exit_code == 1 and "no document matches" in nothing.output
    overlap = _index(runner, tmp_path / "c2", corpus, extra=("--chunker", "recursive", "--overlap", "3"))
    assert overlap.exit_code == 2 and "--overlap" in overlap.output
    bad_encoder = runner.invoke(cli, ["index", str(corpus), "-c", str(tmp_path / "c3"),
                                      "--encoder", "no-such-model"])
    assert bad_encoder.exit_code == 1 and "unknown encoder" in bad_encoder.output


def test_console_script_runs(tmp_path: Path) -> None:
    """The installed entry point works as a real process (help and a clean error)."""
    result = subprocess.run([sys.executable, "-m", "ragmix", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "index" in result.stdout and "ask" in result.stdout
    result = subprocess.run([sys.executable, "-m", "ragmix", "info", "-c", str(tmp_path / "x")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("Error:")
