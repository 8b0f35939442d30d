"""The web page in a real headless Chromium (Debian's, driven by Playwright) against `ragmix serve`.

The server is a real process on a free loopback port, with an API key, over a
hashing-256 collection and a tiny random byte-level model saved to a folder
(its answers are gibberish, but grounded decoding still quotes a verbatim span,
and RAG-Token still gives per-token posteriors). The page is used as a person
would: paste the key, upload a file and watch its job, ask, see the answer
stream in with its quote highlighted, the heat map, search, delete.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'ragmix[server]'")

from serving import free_port, make_collection, stop, wait_ready  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
# From the services notes: what lets Debian's Chromium run headless here, offline.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
KEY = "page-test-key-0123456789"
NOTE = b"# Glossary\n\nA zorbulator calibrates the flux capacitor every morning.\n"
FIRST_ANSWER_MS = 180_000  # the served process loads torch and the model at the first question


def _require_browser():
    """Playwright's sync API, or a failure that says how to install what is missing."""
    if not CHROMIUM.is_file():
        pytest.fail(f"the browser test needs Debian's Chromium at {CHROMIUM}: install it with "
                    "`apt-get install chromium` (`make test` does it, as root or with sudo); "
                    "never `playwright install`, which downloads a browser and fails here",
                    pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs Playwright (the dev extra): pip install -c "
                    "constraints.txt -e '.[dev]'", pytrace=False)
    try:
        import transformers  # noqa: F401
    except ImportError:
        pytest.fail("the browser test serves a tiny model: pip install -e '.[all,dev]'",
                    pytrace=False)
    return sync_playwright


def _tiny_model(folder: Path) -> Path:
    from ragmix.testing import tiny_random_generator

    gen = tiny_random_generator(byte_level=True)
    gen.model.save_pretrained(folder)
    gen.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def served(tmp_path):
    """A base URL of `ragmix serve` (stopped by its PID afterwards)."""
    collection = make_collection(tmp_path / "notes")
    model = _tiny_model(tmp_path / "tiny-bpe")
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "RAGMIX_API_KEYS": KEY}
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "ragmix", "serve", "-c", str(collection), "--port", str(port),
             "--data-dir", str(tmp_path / "data"), "--generator", str(model)],
            stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_ready(process, f"{base}/v1/vocabulary", log).status_code == 200
        yield base
    finally:
        stop(process)
    assert KEY not in log.read_text()  # keys are never logged


def _ask(page, question: str, mode: str) -> dict:
    page.fill("#question", question)
    page.select_option("#mode", mode)
    page.select_option("#decoding", "")  # the mode's default, as the server decides
    page.fill("#ask-k", "3")
    page.click("#ask-button")
    page.wait_for_selector("#answer[data-done=true]", timeout=FIRST_ANSWER_MS)
    assert not page.is_visible("#ask-error"), page.text_content("#ask-error")
    return {"text": page.text_content("#answer"),
            "pieces": int(page.get_attribute("#answer", "data-pieces"))}


@pytest.mark.slow
def test_upload_ask_and_see_the_quote_and_heat_map_in_chromium(served, tmp_path):
    sync_playwright = _require_browser()
    problems, requested = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(60_000)
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: requested.append(r.url))
            page.goto(served)
            page.wait_for_selector("body[data-ready=true]")
            assert "API key" in page.text_content("#status")  # nothing shown without a key
            problems.clear()  # the 401 that said so
            page.fill("#api-key", KEY)
            page.press("#api-key", "Tab")  # change: the key is sent from now on
            page.wait_for_selector("#collection option[value=notes]", state="attached")

            page.click("[data-tab=documents]")
            page.set_input_files("#files", files=[
                {"name": "glossary.md", "mimeType": "text/markdown", "buffer": NOTE}])
            page.click("#upload-button")
            page.wait_for_selector("#job-status[data-status=done]")
            assert "glossary.md: added" in page.text_content("#job-results")
            page.wait_for_selector("#documents td:has-text('glossary.md')")

            page.click("[data-tab=ask]")
            answer = _ask(page, "What does a zorbulator calibrate?", "stuff")
            marks = page.locator("#sources mark").all_text_contents()
            assert answer["text"] and answer["pieces"] >= 1  # arrived as token events
            assert " ".join(answer["text"].split()) in [" ".join(m.split()) for m in marks]
            assert "grounded decoding" in page.text_content("#confidence")
            assert "prior" in page.text_content("#sources li")
            page.screenshot(path=str(tmp_path / "page-quote.png"), full_page=True)

            _ask(page, "What does a zorbulator calibrate?", "rag-token")
            assert page.is_visible("#heatmap")
            cells = page.locator("#heat-tokens span")
            assert cells.count() > 0
            passages = {cells.nth(i).get_attribute("data-passage") for i in range(cells.count())}
            assert passages <= {"1", "2", "3"}
            assert page.locator("#heat-legend li").count() == 3
            assert "posterior" in page.text_content("#sources li")
            page.screenshot(path=str(tmp_path / "page-heatmap.png"), full_page=True)

            page.click("[data-tab=search]")
            page.fill("#query", "zorbulator flux capacitor")
            page.click("#search-button")
            page.wait_for_selector("#hits li:has-text('zorbulator')")

            page.click("[data-tab=documents]")
            page.once("dialog", lambda dialog: dialog.accept())
            page.click("#documents tr:has-text('glossary.md') button")
            page.wait_for_selector("#documents td:has-text('glossary.md')", state="detached")
            page.click("[data-tab=search]")
            page.evaluate("document.querySelector('#hits').replaceChildren()")  # the old hits
            page.click("#search-button")
            page.wait_for_selector("#hits li")  # the new search's hits, not the old ones
            assert "zorbulator" not in page.text_content("#hits")
        finally:
            browser.close()
    assert problems == []  # no script error, no request the page's policy refused
    assert requested and all(url.startswith(served) or url.startswith("data:")
                             for url in requested)
    for shot in ("page-quote.png", "page-heatmap.png"):
        assert (tmp_path / shot).stat().st_size > 10_000
