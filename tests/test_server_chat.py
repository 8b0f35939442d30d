"""POST /v1/chat/completions through the official `openai` client, on a live loopback server."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'ragmix[server]'")
openai = pytest.importorskip("openai", reason="the dev extra: pip install -e '.[dev]'")

from fastapi.testclient import TestClient  # noqa: E402
from serving import ANSWER, assert_problem, live, make_app  # noqa: E402

from ragmix.server.auth import KeyRing  # noqa: E402
from ragmix.testing import ScriptedGenerator  # noqa: E402

STUFF_FREE = {"ragmix": {"mode": "stuff", "decoding": "free", "k": 2}}
MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "How deep is Lake Varno?"},
            {"role": "assistant", "content": "310 metres."},
            {"role": "user", "content": "Who founded Kelm?"}]
READER, ADMIN = "r" * 24, "a" * 24


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    keys = KeyRing.parse(f"{READER} read\n{ADMIN}", origin="test")
    with live(make_app(tmp_path_factory.mktemp("chat"), keys=keys)) as url:
        yield url


def _client(base_url: str, key: str = READER):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=30)


def test_a_completion_answers_the_last_user_message_with_provenance_in_one_field(base_url):
    completion = _client(base_url).chat.completions.create(
        model="notes", messages=MESSAGES, temperature=0.2, extra_body=STUFF_FREE)
    assert completion.object == "chat.completion" and completion.model == "notes"
    (choice,) = completion.choices
    assert choice.message.role == "assistant" and choice.message.content == ANSWER
    assert choice.finish_reason == "stop"
    ragmix = completion.model_extra["ragmix"]
    assert ragmix["question"] == "Who founded Kelm?"  # the last user turn, alone
    assert ragmix["collection"] == "notes" and ragmix["mode"] == "stuff"
    assert [s["n"] for s in ragmix["sources"]] == [1, 2]
    first = ragmix["sources"][0]
    assert first["doc_id"] == "seed:kelm" and first["prior"] > 0.5
    assert first["posterior"] is None  # stuff answers have no posterior
    (citation,) = ragmix["citations"]
    assert citation["n"] == 1 and citation["quote"] == first["text"]
    assert ragmix["confidence"] is None and ragmix["abstained"] is False


def test_a_stream_is_openai_chunks_with_provenance_only_on_the_last(base_url):
    chunks = list(_client(base_url).chat.completions.create(
        model="notes", messages=MESSAGES, stream=True, extra_body=STUFF_FREE))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == ANSWER and len(chunks) > 3  # word by word
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert [bool((c.model_extra or {}).get("ragmix")) for c in chunks] == \
        [False] * (len(chunks) - 1) + [True]
    ragmix = chunks[-1].model_extra["ragmix"]
    assert ragmix["citations"][0]["doc_id"] == "seed:kelm"


def test_the_raw_stream_ends_with_done(base_url):
    import httpx

    body = {"model": "notes", "messages": MESSAGES, "stream": True, **STUFF_FREE}
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {READER}"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)
    for line in lines[:-1]:
        json.loads(line.removeprefix("data: "))


def test_the_collections_are_the_models(base_url):
    assert [m.id for m in _client(base_url).models.list()] == ["notes"]


@pytest.mark.parametrize("call, error, status", [
    ({"model": "wiki"}, "NotFoundError", 404),
    ({"extra_body": {"ragmix": {"mode": "stuff", "decoding": "fast"}}}, "UnprocessableEntityError",
     422),
    ({"extra_body": {"ragmix": {"k": 0}}}, "UnprocessableEntityError", 422),
    ({"messages": [{"role": "system", "content": "no question here"}]},
     "UnprocessableEntityError", 422),
    ({"key": "x" * 24}, "AuthenticationError", 401),
])
@pytest.mark.parametrize("stream", [False, True])
def test_errors_are_real_statuses_that_openai_clients_raise(base_url, call, error, status,
                                                            stream):
    call = dict(call)
    client = _client(base_url, call.pop("key", READER))
    request = {"model": "notes", "messages": MESSAGES, "extra_body": STUFF_FREE, **call}
    with pytest.raises(getattr(openai, error)) as raised:
        result = client.chat.completions.create(stream=stream, **request)
        list(result) if stream else None
    assert raised.value.status_code == status
    assert raised.value.response.headers["content-type"].startswith("application/problem+json")


def test_an_error_while_streaming_is_an_error_chunk_the_client_raises(tmp_path):
    class Broken(ScriptedGenerator):
        def generate(self, prompt, **options):
            raise RuntimeError("the model fell over")

    with live(make_app(tmp_path, generator=Broken(""))) as url:
        stream = _client(url).chat.completions.create(
            model="notes", messages=MESSAGES, stream=True, extra_body=STUFF_FREE)
        with pytest.raises(openai.APIError, match="the server failed on this request"):
            list(stream)


def test_a_grounded_answer_carries_quotes_whose_offsets_give_the_text(tmp_path):
    pytest.importorskip("transformers", reason="the models extra")
    from ragmix.testing import tiny_random_generator

    app = make_app(tmp_path, generator=tiny_random_generator(byte_level=True))
    body = {"model": "notes", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Who founded Kelm?"}]}], "max_tokens": 12,
        "ragmix": {"mode": "stuff", "decoding": "grounded", "k": 2, "beams": 2}}
    with TestClient(app) as client:
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        completion = response.json()
        assert_problem(client.post("/v1/chat/completions", json={**body, "n": 2}), 422,
                       "validation_error")
    ragmix = completion["ragmix"]
    text = completion["choices"][0]["message"]["content"]
    assert text and ragmix["decoding"] == "grounded" and ragmix["quotes"]
    by_n = {s["n"]: s for s in ragmix["sources"]}
    for quote, citation in zip(ragmix["quotes"], ragmix["citations"]):
        passage = by_n[quote["hit"]]["text"]
        assert citation["kind"] == "quote" and citation["n"] == quote["hit"]
        assert citation["quote"] == passage[quote["start"]:quote["end"]]
        assert citation["doc_start"] == by_n[quote["hit"]]["start"] + quote["start"]
    quote = ragmix["quotes"][0]
    assert " ".join(by_n[quote["hit"]]["text"][quote["start"]:quote["end"]].split()) == text
