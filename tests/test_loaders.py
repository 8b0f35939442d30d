"""Loader tests on small files built in tmp_path: every format, every skip reason."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from ragmix.documents import SUPPORTED_SUFFIXES, load_paths
from ragmix.errors import BadInputError
from ragmix.types import Document, Skipped


def make_pdf(text: str, title: str) -> bytes:
    """A minimal valid one-page PDF showing ``text`` in Helvetica, with an /Info title."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Title ({title}) >>".encode(),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def load(*paths: Path, **options) -> tuple[dict[str, Document], dict[str, str]]:
    """Documents by doc_id and skip reasons by source."""
    docs: dict[str, Document] = {}
    skipped: dict[str, str] = {}
    for item in load_paths(list(paths), **options):
        if isinstance(item, Document):
            docs[item.doc_id] = item
        else:
            assert isinstance(item, Skipped)
            skipped[item.source] = item.reason
    return docs, skipped


def key(path: Path) -> str:
    return str(path.resolve())


def test_text_markdown_and_rst(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("Plain text here.\n", encoding="utf-8")
    (tmp_path / "guide.md").write_text(
        "```sh\n# not a title\n```\nIntro\n\n# The Guide #\n\nBody.\n", encoding="utf-8"
    )
    (tmp_path / "no_heading.markdown").write_text("## Only a sub heading\n", encoding="utf-8")
    (tmp_path / "ref.rst").write_bytes("\ufeffRéférence\n=========\n".encode("utf-8"))
    docs, skipped = load(tmp_path)
    assert skipped == {}
    txt = docs[key(tmp_path / "notes.txt")]
    assert txt.source == txt.doc_id == str((tmp_path / "notes.txt").resolve())
    assert (txt.text, txt.title) == ("Plain text here.\n", "notes")
    assert txt.mtime == os.stat(tmp_path / "notes.txt").st_mtime
    assert txt.content_hash == hashlib.sha256(b"Plain text here.\n").hexdigest()
    assert docs[key(tmp_path / "guide.md")].title == "The Guide"
    assert docs[key(tmp_path / "no_heading.markdown")].title == "no_heading"
    rst = docs[key(tmp_path / "ref.rst")]
    assert rst.text.startswith("Référence")  # the BOM is dropped
    assert rst.title == "ref"


def test_html_drops_script_and_style_and_takes_the_title(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><title> My Page </title><style>p {color: red}</style></head>"
        "<body><script>var secret = 1;</script><h1>Heading</h1>"
        "<p>First <b>bold</b> paragraph.</p><p>Second.<br>Line two.</p>"
        "<ul><li>one</li><li>two</li></ul><table><tr><td>a</td><td>b</td></tr></table>"
        "</body></html>",
        encoding="utf-8",
    )
    (tmp_path / "untitled.htm").write_text("<p>No title</p>", encoding="utf-8")
    docs, skipped = load(tmp_path)
    assert skipped == {}
    doc = docs[key(page)]
    assert doc.title == "My Page"
    # Blocks become paragraphs, list items and <br> lines, table cells words.
    assert doc.text == "Heading\n\nFirst bold paragraph.\n\nSecond.\nLine two.\n\none\ntwo\n\na b"
    assert "secret" not in doc.text and "color" not in doc.text
    assert docs[key(tmp_path / "untitled.htm")].title == "untitled"


def test_pdf_text_and_metadata_title(tmp_path: Path) -> None:
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(make_pdf("Hello from a PDF", "A Paper Title"))
    docs, skipped = load(pdf)
    assert skipped == {}
    doc = docs[key(pdf)]
    assert "Hello from a PDF" in doc.text
    assert doc.title == "A Paper Title"


def test_broken_and_encrypted_pdfs_are_skipped(tmp_path: Path) -> None:
    pypdf = pytest.importorskip("pypdf")
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    writer = pypdf.PdfWriter()
    writer.add_blank_page(width=72, height=72)
    writer.encrypt("secret", algorithm="RC4-128")  # RC4 needs no cryptography package
    with open(tmp_path / "locked.pdf", "wb") as f:
        writer.write(f)
    docs, skipped = load(tmp_path)
    assert docs == {}
    assert skipped[key(tmp_path / "broken.pdf")].startswith("unreadable PDF")
    assert skipped[key(tmp_path / "locked.pdf")].startswith("encrypted PDF")


def test_beir_jsonl_rows_become_documents_and_bad_rows_are_skipped(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        json.dumps({"_id": "d1", "title": "First", "text": "Alpha text."}),
        "",  # blank lines are ignored
        "{not json",
        json.dumps({"_id": "d2", "text": "Beta text."}),
        json.dumps({"title": "no id", "text": "x"}),
        json.dumps({"_id": "d3", "title": "no text"}),
        json.dumps({"_id": "d1", "text": "again"}),
        json.dumps({"_id": 4, "title": "int id", "text": "Gamma."}),
    ]
    corpus.write_text("\n".join(rows) + "\n", encoding="utf-8")
    docs, skipped = load(corpus)
    assert sorted(docs) == ["4", "d1", "d2"]
    d1 = docs["d1"]
    # the title leads the text, as BEIR indexes it
    assert (d1.title, d1.text, d1.source) == ("First", "First\n\nAlpha text.", key(corpus))
    assert d1.mtime == os.stat(corpus).st_mtime
    assert d1.content_hash == hashlib.sha256(b"First\n\nAlpha text.").hexdigest()
    assert (docs["d2"].title, docs["d2"].text) == ("", "Beta text.")
    src = key(corpus)
    assert skipped[f"{src}:3"].startswith("bad JSON")
    assert skipped[f"{src}:5"].startswith("missing _id")
    assert skipped[f"{src}:6"].startswith("missing text")
    assert skipped[f"{src}:7"] == "duplicate _id 'd1' (first on line 1)"
    assert len(skipped) == 4


def test_jsonl_size_limit_is_per_row(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    small = json.dumps({"_id": "s", "text": "short"})
    big = json.dumps({"_id": "b", "text": "x" * 200})
    corpus.write_text(f"{small}\n{big}\n", encoding="utf-8")
    docs, skipped = load(corpus, max_bytes=100)
    assert list(docs) == ["s"]
    assert skipped == {f"{key(corpus)}:2": "larger than 100 bytes (raise --max-bytes)"}


def test_bad_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blank.md").write_text(" \n\t\n", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"abc\x00\x01\x02def")
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    (tmp_path / "big.txt").write_text("word " * 100, encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "Makefile").write_text("all:\n", encoding="utf-8")
    (tmp_path / "empty.html").write_text("<script>only()</script>", encoding="utf-8")
    (tmp_path / "blank.jsonl").write_text("\n  \n", encoding="utf-8")
    docs, skipped = load(tmp_path, max_bytes=100)
    assert docs == {}
    assert skipped == {
        key(tmp_path / "empty.txt"): "empty",
        key(tmp_path / "blank.md"): "empty",
        key(tmp_path / "binary.txt"): "binary or not UTF-8",
        key(tmp_path / "latin1.txt"): "binary or not UTF-8",
        key(tmp_path / "big.txt"): "larger than 100 bytes (raise --max-bytes)",
        key(tmp_path / "image.png"): "unsupported file type .png (supported: "
        + ", ".join(SUPPORTED_SUFFIXES) + ")",
        key(tmp_path / "Makefile"): "unsupported file type (no extension) (supported: "
        + ", ".join(SUPPORTED_SUFFIXES) + ")",
        key(tmp_path / "empty.html"): "empty",
        key(tmp_path / "blank.jsonl"): "empty",
    }


def test_unreadable_file_is_skipped_with_the_os_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # chmod 0 does not stop root (as in CI containers), so fake the OS refusing.
    def refuse(self: Path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    (tmp_path / "secret.txt").write_text("hidden", encoding="utf-8")
    (tmp_path / "corpus.jsonl").write_text('{"_id": "1", "text": "t"}\n', encoding="utf-8")
    monkeypatch.setattr(Path, "read_bytes", refuse)
    monkeypatch.setattr(Path, "open", refuse)
    _, skipped = load(tmp_path)
    assert skipped == {
        key(tmp_path / "secret.txt"): "Permission denied",
        key(tmp_path / "corpus.jsonl"): "Permission denied",
    }


def test_walk_is_sorted_recursive_and_ignores_hidden(tmp_path: Path) -> None:
    for rel in ["b.txt", "a/z.txt", "a/c/y.txt", "A.txt", ".git/HEAD.txt", ".hidden.txt",
                "a/.cache/x.txt"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel, encoding="utf-8")
    items = list(load_paths([tmp_path]))
    assert all(isinstance(i, Document) for i in items)
    names = [Path(i.doc_id).relative_to(tmp_path.resolve()).as_posix() for i in items]
    assert names == ["A.txt", "b.txt", "a/z.txt", "a/c/y.txt"]
    assert [i.doc_id for i in load_paths([tmp_path])] == [i.doc_id for i in items]


def test_explicit_hidden_file_loads_and_duplicates_load_once(tmp_path: Path) -> None:
    hidden = tmp_path / ".notes.txt"
    hidden.write_text("explicit", encoding="utf-8")
    (tmp_path / "a.txt").write_text("a", encoding="utf-8")
    items = list(load_paths([hidden, tmp_path, tmp_path / "a.txt", str(tmp_path / "a.txt")]))
    assert [Path(i.doc_id).name for i in items] == [".notes.txt", "a.txt"]


def test_missing_path_raises_at_the_call(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_text("ok", encoding="utf-8")
    missing = tmp_path / "nope"
    with pytest.raises(BadInputError, match="path does not exist: .*nope"):
        load_paths([tmp_path / "ok.txt", missing])  # raises before iteration
    with pytest.raises(BadInputError, match="max_bytes must be an integer > 0, got 0"):
        load_paths([tmp_path], max_bytes=0)


def test_a_single_path_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("one", encoding="utf-8")
    assert [d.text for d in load_paths(tmp_path / "one.txt")] == ["one"]
