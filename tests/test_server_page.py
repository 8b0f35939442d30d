"""The web page's files and the vocabulary it builds its selectors from (no browser here)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'ragmix[server]'")

from fastapi.testclient import TestClient  # noqa: E402
from serving import assert_problem, make_app  # noqa: E402

from ragmix import modes  # noqa: E402
from ragmix.retrieval.retrievers import DEFAULT_FUSION, FUSIONS, MODES  # noqa: E402
from ragmix.server.auth import KeyRing  # noqa: E402
from ragmix.server.page import STATIC  # noqa: E402

PAGE_FILES = sorted(p.name for p in STATIC.iterdir())


@pytest.fixture
def client(tmp_path):
    with TestClient(make_app(tmp_path)) as client:
        yield client


def test_the_page_and_its_files_are_served_with_a_same_origin_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    for name in re.findall(r'(?:src|href)="/static/([^"]+)"', page.text):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert "content-security-policy" in response.headers
    for name in ("app.js", "api.js", "render.js"):
        assert client.get(f"/static/{name}").headers["content-type"].startswith(
            "text/javascript")


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/%2e%2e/app.py",
                                  "/static/..%2fapp.py", "/static/%2e%2e%2fpage.py",
                                  "/static//etc/passwd", "/static/..%5capp.py",
                                  "/static/nope.js"])
def test_nothing_outside_the_page_folder_is_served(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "create_app" not in response.text and "root:" not in response.text


def test_a_link_out_of_the_page_folder_is_not_followed(tmp_path, monkeypatch):
    import shutil

    folder = tmp_path / "static"
    shutil.copytree(STATIC, folder)
    (folder / "leak.py").symlink_to(STATIC.parent / "app.py")
    monkeypatch.setattr("ragmix.server.page.STATIC", folder)
    with TestClient(make_app(tmp_path)) as client:
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/static/leak.py").status_code == 404


@pytest.mark.parametrize("name", PAGE_FILES)
def test_the_page_fetches_nothing_from_elsewhere(name):
    text = (STATIC / name).read_text(encoding="utf-8")
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\(", text, re.I), name


@pytest.mark.parametrize("name", [n for n in PAGE_FILES if n.endswith(".js")])
def test_the_scripts_name_no_mode_of_their_own(name):
    """One vocabulary: the selectors' choices come from /v1/vocabulary, never from the JS."""
    text = (STATIC / name).read_text(encoding="utf-8")
    names = {*modes.GENERATION_MODES, *modes.ASK_DECODINGS, *MODES, *FUSIONS, *modes.SCORINGS}
    quoted = set(re.findall(r"""["'`]([a-z0-9-]+)["'`]""", text))
    assert quoted & names == set()


def test_the_vocabulary_is_ragmixs_own_and_needs_no_key(tmp_path):
    keys = KeyRing.parse("k" * 20, origin="t")
    with TestClient(make_app(tmp_path, keys=keys)) as client:
        words = client.get("/v1/vocabulary").json()
        assert_problem(client.get("/v1/collections"), 401, "missing_api_key")
    assert words["generation_modes"] == list(modes.GENERATION_MODES)
    assert words["decodings"] == list(modes.ASK_DECODINGS)
    assert words["retrieval_modes"] == list(MODES) and words["fusions"] == list(FUSIONS)
    assert words["default_decoding"] == {m: modes.ask_decoding(m, None)
                                         for m in modes.GENERATION_MODES}
    assert words["defaults"]["mode"] == modes.ASK_DEFAULT_MODE
    assert words["defaults"]["fusion"] == DEFAULT_FUSION


def test_the_page_is_not_in_the_api_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and "/v1/vocabulary" in paths and "/v1/chat/completions" in paths
