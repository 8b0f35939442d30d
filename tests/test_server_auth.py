"""The HTTP API's keys, scopes, limits and problem-details errors (401/403/404/413/422/429)."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'ragmix[server]'")

from click.testing import CliRunner  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from serving import assert_problem, make_app, make_collection, upload  # noqa: E402

from ragmix.cli.main import cli  # noqa: E402
from ragmix.errors import BadInputError  # noqa: E402
from ragmix.server.auth import ENV_VAR, KeyRing, RateLimit, check_bind  # noqa: E402
from ragmix.server.settings import Limits  # noqa: E402

ADMIN = "admin-key-0123456789abcdef"
READER = "reader-key-0123456789abcdef"
WRITER = "writer-key-0123456789abcdef"
KEYS_FILE = f"# who may do what\n{ADMIN}\n{READER} read\n\n{WRITER} read,write\n"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keys(tmp_path):
    path = tmp_path / "keys.txt"
    path.write_text(KEYS_FILE)
    return KeyRing.load(path, environ={})


@pytest.fixture
def client(tmp_path, keys):
    with TestClient(make_app(tmp_path, keys=keys)) as client:
        yield client


def test_keys_file_lines_give_scopes_and_a_bare_key_has_all(keys):
    assert keys.scopes_of(ADMIN) == {"read", "write", "admin"}
    assert keys.scopes_of(READER) == {"read"}
    assert keys.scopes_of(WRITER) == {"read", "write"}
    assert keys.scopes_of("not-a-key-0123456789") is None
    from_env = KeyRing.load(None, environ={ENV_VAR: f"{READER} read;{ADMIN}"})
    assert from_env.scopes_of(READER) == {"read"} and len(from_env) == 2


@pytest.mark.parametrize("line, says", [
    ("short read", "at least 16 characters"),
    (f"{READER} read,delete", "unknown scope(s) delete"),
])
def test_a_bad_keys_file_is_refused_without_quoting_the_key(line, says):
    with pytest.raises(BadInputError, match=r"keys\.txt, entry 1") as info:
        KeyRing.parse(line, origin="keys.txt")
    assert says in str(info.value) and line.split()[0] not in str(info.value)


def _strings(obj, seen=None, depth=0):
    """Every str and bytes reachable from ragmix objects' attributes, dicts and sequences."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 12:
        return
    seen.add(id(obj))
    if isinstance(obj, (str, bytes)):
        yield obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _strings(key, seen, depth + 1)
            yield from _strings(value, seen, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            yield from _strings(item, seen, depth + 1)
    elif type(obj).__module__.startswith("ragmix") and hasattr(obj, "__dict__"):
        yield from _strings(vars(obj), seen, depth + 1)


def test_keys_are_held_only_as_hashes_and_never_logged(client, caplog):
    state = client.app.state.ragmix
    held = list(_strings(state)) + list(_strings(vars(client.app.state)))
    assert held and not any(ADMIN in s or READER in s for s in map(str, held))
    assert ADMIN not in repr(state.settings) and "KeyRing(3 key(s))" in repr(state.settings)
    with caplog.at_level(logging.DEBUG):
        client.get("/v1/collections", headers=bearer(READER))
        client.get("/v1/collections", headers=bearer(READER + "x"))
    assert READER not in caplog.text


def test_no_key_is_401_and_a_wrong_key_is_401_with_a_bearer_challenge(client):
    response = client.get("/v1/collections")
    assert_problem(response, 401, "missing_api_key")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_problem(client.get("/v1/collections", headers=bearer("nope-0123456789abcdef")),
                   401, "invalid_api_key")
    assert_problem(client.get("/v1/collections", headers={"Authorization": f"Basic {ADMIN}"}),
                   401, "missing_api_key")


def test_a_key_without_the_scope_is_403_and_with_it_passes(client):
    assert client.get("/v1/collections", headers=bearer(READER)).status_code == 200
    body = assert_problem(upload(client, {"a.md": b"text"}, headers=bearer(READER)), 403,
                          "insufficient_scope")
    assert "needs scope 'write'" in body["detail"] and "this key has read" in body["detail"]
    assert_problem(client.delete("/v1/collections/notes/documents", params={"pattern": "*"},
                                 headers=bearer(READER)), 403, "insufficient_scope")
    assert upload(client, {"a.md": b"text"}, headers=bearer(WRITER)).status_code == 202


def test_unknown_collections_jobs_and_routes_are_404_problems(tmp_path):
    with TestClient(make_app(tmp_path)) as client:
        body = assert_problem(client.get("/v1/collections/nope"), 404, "unknown_collection")
        assert "it serves: notes" in body["detail"]
        assert_problem(client.post("/v1/collections/nope/search", json={"query": "x"}), 404,
                       "unknown_collection")
        assert_problem(client.get("/v1/jobs/0123"), 404, "unknown_job")
        assert_problem(client.get("/v1/nothing-here"), 404, "not_found")
        assert_problem(client.put("/v1/collections"), 405, "method_not_allowed")


@pytest.mark.parametrize("body, loc", [
    ({"query": "kelm", "k": 101}, "body.k"),
    ({"query": "kelm", "k": 0}, "body.k"),
    ({"query": "x" * 2001}, "body.query"),
    ({"query": ""}, "body.query"),
    ({"query": "kelm", "retrieval": "telepathy"}, "body.retrieval"),
    ({"query": "kelm", "top_k": 3}, "body.top_k"),
    ({}, "body.query"),
])
def test_invalid_search_requests_are_422_naming_the_field(tmp_path, body, loc):
    with TestClient(make_app(tmp_path)) as client:
        problem = assert_problem(client.post("/v1/collections/notes/search", json=body), 422,
                                 "validation_error")
    assert problem["errors"][0]["loc"] == loc and problem["detail"].startswith(loc)


def test_a_body_that_cannot_be_parsed_is_a_documented_400_problem(tmp_path):
    # Found by the Schemathesis fuzz: bytes that are not UTF-8 JSON were an undocumented 400.
    with TestClient(make_app(tmp_path)) as client:
        paths = client.app.openapi()["paths"]
        for route in ("/v1/collections/{name}/search", "/v1/collections/{name}/ask",
                      "/v1/chat/completions", "/v1/collections"):
            path = route.replace("{name}", "notes")
            body = assert_problem(client.post(path, content=b"\xb3on\xff",
                                              headers={"Content-Type": "application/json"}),
                                  400, "malformed_body")
            assert "JSON in UTF-8" in body["detail"]
            assert "400" in paths[route]["post"]["responses"]
        broken = client.post("/v1/collections/notes/documents", content=b"--x\r\nbroken",
                             headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert broken.status_code in (400, 422)  # never a 5xx
        assert "400" in paths["/v1/collections/{name}/documents"]["post"]["responses"]
        assert broken.headers["content-type"].startswith("application/problem+json")


def test_an_invalid_ask_option_names_the_choices(tmp_path):
    with TestClient(make_app(tmp_path)) as client:
        problem = assert_problem(client.post("/v1/collections/notes/ask",
                                             json={"question": "q", "mode": "rag-tokens"}),
                                 422, "validation_error")
    assert "'stuff', 'rag-sequence' or 'rag-token'" in problem["detail"]
    assert "got 'rag-tokens'" in problem["detail"]


def test_a_body_or_an_upload_over_the_limits_is_413(tmp_path):
    limits = Limits(max_body_bytes=2_000, max_upload_bytes=100)
    with TestClient(make_app(tmp_path, limits=limits)) as client:
        big = {"query": "kelm " * 1_000}
        assert_problem(client.post("/v1/collections/notes/search", json=big), 413,
                       "body_too_large")
        body = assert_problem(upload(client, {"big.md": b"word " * 50}), 413, "upload_too_large")
        assert "'big.md'" in body["detail"] and "100 bytes" in body["detail"]
        assert list(client.app.state.ragmix.staging.iterdir()) == []


def test_a_chunked_body_over_the_limit_is_413(tmp_path):
    with TestClient(make_app(tmp_path, limits=Limits(max_body_bytes=1_000))) as client:
        chunks = (b"x" * 400 for _ in range(5))  # no Content-Length: counted as it comes
        response = client.post("/v1/collections/notes/search", content=chunks,
                               headers={"Content-Type": "application/json"})
    assert_problem(response, 413, "body_too_large")


def test_a_key_over_its_rate_limit_is_429_with_retry_after(tmp_path, keys):
    app = make_app(tmp_path, keys=keys, rate_limit=RateLimit(per_second=0.01, burst=2))
    with TestClient(app) as client:
        ok = [client.get("/v1/collections", headers=bearer(READER)).status_code
              for _ in range(2)]
        limited = client.get("/v1/collections", headers=bearer(READER))
        other = client.get("/v1/collections", headers=bearer(WRITER))  # its own bucket
    assert ok == [200, 200] and other.status_code == 200
    assert_problem(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1


def test_an_open_server_refuses_a_non_loopback_host(tmp_path, keys):
    with pytest.raises(BadInputError, match="refusing to serve on '0.0.0.0' without API keys"):
        check_bind("0.0.0.0", KeyRing({}))
    check_bind("127.0.0.1", KeyRing({}))
    check_bind("0.0.0.0", keys)
    folder = make_collection(tmp_path / "col")
    result = CliRunner().invoke(cli, ["serve", "-c", str(folder), "--host", "0.0.0.0",
                                      "--data-dir", str(tmp_path / "data")],
                                env={ENV_VAR: ""})
    assert result.exit_code == 1
    assert "refusing to serve on '0.0.0.0' without API keys" in result.output
    assert not (tmp_path / "data").exists()
