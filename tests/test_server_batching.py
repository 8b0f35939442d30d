"""Continuous batching in the generator worker: asks in flight share each decoding step.

A tiny random byte-level model (it can spell any passage, as grounded decoding
needs) stands for the real one: what a request gets batched with others must
be what it gets alone, to float rounding.
"""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'ragmix[server]'")

from ragmix.server.answering import answerer  # noqa: E402
from ragmix.server.worker import Cancelled, GeneratorWorker  # noqa: E402
from ragmix.types import Hit  # noqa: E402

PASSAGES = (
    "The Denver Broncos won Super Bowl 50 in February 2016, at Levi's Stadium in Santa Clara.",
    "Paris is the capital and largest city of France; about 2.1 million people live there.",
    "The committee decided in 1971 that the index is rebuilt from the store after a crash.",
)
QUESTIONS = ("Who won Super Bowl 50?", "What is the capital of France?",
             "When did the committee decide?", "Where is the lake?")
# Each token's log-probability agrees within 1e-5; an answer's (a sum over up to 32 tokens of
# a random model's peaked logits, about -40) within 1e-5 or a millionth of it.
TOL, REL = 1e-5, 1e-6


class Passages:
    """A searcher whose hits (and their scores) depend on the question, deterministically."""

    def search(self, query: str, k: int, *, mode: str) -> list[Hit]:
        order = sorted(range(len(PASSAGES)), key=lambda i: (len(query) * (i + 3)) % 7)
        return [Hit(i, f"doc{i}", PASSAGES[i], 1.0 - 0.2 * rank, 0.0, rank + 1,
                    source=f"doc{i}.md", end=len(PASSAGES[i]))
                for rank, i in enumerate(order[:k])]


@pytest.fixture(scope="module")
def gen(torch):
    from ragmix.testing import tiny_random_generator

    return tiny_random_generator(byte_level=True, seed=3)


def held(gen, runs):
    """Run ``runs`` (functions of the generator) on a worker started only once all are
    queued, so that they decode together: their results (or errors) and the worker's counts."""
    worker = GeneratorWorker(lambda: gen)
    futures = [worker.submit(run) for run in runs]
    worker.start()
    try:
        return [_outcome(f) for f in futures], worker.counts
    finally:
        worker.close()


def alone(gen, runs):
    """Each of ``runs`` on its own worker step by step: one at a time."""
    worker = GeneratorWorker(lambda: gen)
    worker.start()
    try:
        return [_outcome(worker.submit(run)) for run in runs]
    finally:
        worker.close()


def _outcome(future):
    try:
        return future.result(timeout=120)
    except Exception as exc:  # compared by the tests
        return exc


def _ask(options, question, pieces=None):
    def run(generator):
        answering = answerer(Passages(), generator, k=3, **options)
        return answering.ask(question, on_token=None if pieces is None else pieces.append)
    return run


def assert_same_answer(got, want):
    assert got.text == want.text and got.quotes == want.quotes and got.cited == want.cited
    if want.logprob is None:  # free "stuff" answers have none
        assert got.logprob is None
    else:
        assert got.logprob == pytest.approx(want.logprob, rel=REL, abs=TOL)
    assert got.posterior == pytest.approx(want.posterior, abs=TOL)
    assert got.prior == pytest.approx(want.prior, abs=TOL)


@pytest.mark.parametrize("options", [
    {},  # the default ask: RAG-Sequence, grounded
    {"mode": "rag-sequence", "decoding": "fast", "beams": 3},
    {"mode": "rag-sequence", "decoding": "thorough", "beams": 2},
    {"mode": "rag-token", "max_new_tokens": 6},
    {"mode": "stuff", "decoding": "grounded", "min_confidence": 0},
    {"mode": "stuff", "decoding": "free", "max_new_tokens": 10},
], ids=["default", "fast", "thorough", "rag-token", "stuff-grounded", "stuff-free"])
def test_a_batched_ask_answers_as_it_does_alone(gen, options):
    runs = [_ask(options, q) for q in QUESTIONS]
    want = alone(gen, runs)
    got, counts = held(gen, runs)
    for g, w in zip(got, want):
        assert not isinstance(w, Exception), w
        assert_same_answer(g, w)
    assert counts.most_tasks == len(QUESTIONS)  # all four shared steps


def greedy(prompt, steps, *, rows=2, at_step=None):
    """A task decoding ``steps`` greedy tokens of ``prompt`` (and shorter copies of it, one per
    extra row): the log-probability of each row's token at each step. ``at_step(i)`` runs
    before step i's advance, on the task's own thread."""
    def run(generator):
        import torch

        ids = generator.encode_prompt(prompt)
        with torch.inference_mode():
            state = generator.start_decoding([ids[: len(ids) - 2 * r] for r in range(rows)])
            picked = []
            for i in range(steps):
                tokens = state.next_lp.argmax(-1)  # (rows,)
                picked.append(state.next_lp.gather(-1, tokens[:, None])[:, 0].tolist())
                if at_step is not None:
                    at_step(i)
                state.advance(tokens)
        return picked
    return run


def test_requests_join_and_leave_the_batch_mid_decode(gen):
    worker = GeneratorWorker(lambda: gen)
    joined = {}

    def join(i):  # the long task brings others in while it decodes
        if i == 2:
            joined["short"] = worker.submit(greedy("Where is Paris?", 4, rows=1))
        if i == 9:
            joined["late"] = worker.submit(greedy("Who won?", 5, rows=3))

    worker.start()
    try:
        long = worker.submit(greedy("What did the committee decide?", 16, at_step=join))
        results = {"long": long.result(timeout=60)}
        results.update({name: f.result(timeout=60) for name, f in joined.items()})
    finally:
        worker.close()
    want = {"long": greedy("What did the committee decide?", 16)(gen),
            "short": greedy("Where is Paris?", 4, rows=1)(gen),
            "late": greedy("Who won?", 5, rows=3)(gen)}
    for name, picked in want.items():
        assert results[name] == [pytest.approx(step, abs=TOL) for step in picked], name
    # the short one left before the late one joined: never three at once, 2 + 1 + 3 rows at most
    assert worker.counts.most_tasks == 2 and worker.counts.most_rows == 5
    # every advance of the two others shared one of the long task's 16
    assert (worker.counts.steps, worker.counts.tasks) == (16, 16 + 4 + 5)


def test_a_cancelled_request_leaves_the_batch_and_stops(gen):
    cancel = threading.Event()
    steps_taken = []

    def count(i):
        steps_taken.append(i)

    def cancel_at(i):
        if i == 3:
            cancel.set()  # what a closed stream does

    worker = GeneratorWorker(lambda: gen)
    doomed = worker.submit(greedy("Where is the lake?", 40, at_step=count), cancelled=cancel)
    other = worker.submit(greedy("Who won Super Bowl 50?", 8, at_step=cancel_at))
    worker.start()
    try:
        with pytest.raises(Cancelled):
            doomed.result(timeout=60)
        picked = other.result(timeout=60)
    finally:
        worker.close()
    assert len(steps_taken) <= 5  # stopped at its next step, far from its 40
    assert picked == [pytest.approx(s, abs=TOL) for s in greedy("Who won Super Bowl 50?", 8)(gen)]


class Boom(Exception):
    pass


def _raise_at(n):
    def at_step(i):
        if i == n:
            raise Boom(f"step {i}")
    return at_step


def test_one_failing_request_fails_only_itself(gen):
    vocabulary = len(gen.tokenizer)

    def bad_tokens(generator):  # its rows break the shared forward pass itself
        import torch

        with torch.inference_mode():
            state = generator.start_decoding([generator.encode_prompt("Where?")])
            state.advance(state.next_lp.argmax(-1))
            state.advance(torch.tensor([vocabulary + 7]))
        return "unreachable"

    fine = greedy("What is the capital of France?", 6)
    got, counts = held(gen, [greedy("Who won?", 10, at_step=_raise_at(2)), bad_tokens, fine])
    assert isinstance(got[0], Boom) and str(got[0]) == "step 2"
    assert isinstance(got[1], IndexError)  # the embedding lookup of an id past the vocabulary
    assert got[2] == [pytest.approx(s, abs=TOL) for s in fine(gen)]
    assert counts.most_tasks == 3


def test_each_request_streams_its_own_tokens_in_order_while_batched(gen):
    options = {"mode": "stuff", "decoding": "free", "max_new_tokens": 12}
    timeline = []

    class Pieces(list):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def append(self, piece):
            timeline.append(self.name)
            super().append(piece)

    streams = [Pieces(q) for q in QUESTIONS]
    got, counts = held(gen, [_ask(options, q, s) for q, s in zip(QUESTIONS, streams)])
    alone_streams = [[] for _ in QUESTIONS]
    want = alone(gen, [_ask(options, q, s) for q, s in zip(QUESTIONS, alone_streams)])
    for answer, pieces, wanted, wanted_pieces in zip(got, streams, want, alone_streams):
        assert list(pieces) == wanted_pieces and "".join(pieces) == answer.text == wanted.text
    assert counts.most_tasks == len(QUESTIONS)
    # the pieces went out as decoded, interleaved across the requests, not one answer after another
    firsts, lasts = ({q: f(timeline, q) for q in QUESTIONS} for f in (
        lambda t, q: t.index(q), lambda t, q: len(t) - 1 - t[::-1].index(q)))
    assert max(firsts.values()) < min(lasts.values())


def test_the_server_batches_concurrent_asks_and_answers_as_alone(gen, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from fastapi.testclient import TestClient
    from serving import make_app

    questions = ["Who founded Kelm?", "How deep is Lake Varno?", "When was Kelm founded?"]
    with TestClient(make_app(tmp_path, generator=gen)) as client:
        def ask(question):
            response = client.post("/v1/collections/notes/ask",
                                   json={"question": question, "k": 2, "min_confidence": 0})
            assert response.status_code == 200, response.text
            return response.json()

        one_by_one = [ask(q) for q in questions]
        with ThreadPoolExecutor(len(questions)) as pool:
            together = list(pool.map(ask, questions * 2))
        counts = client.app.state.ragmix.worker.counts
    for got, want in zip(together, one_by_one * 2):
        assert got["text"] == want["text"] and got["quotes"] == want["quotes"]
        assert got["logprob"] == pytest.approx(want["logprob"], rel=REL, abs=TOL)
    assert counts.most_tasks >= 2


def test_advance_together_gives_each_state_what_it_gets_alone(gen, torch):
    from ragmix.generation.decode_state import advance_together

    prompts = [gen.encode_prompt(q) for q in QUESTIONS[:3]]
    with torch.inference_mode():
        solo = [gen.start_decoding(prompts[:2]), gen.start_decoding(prompts[2:])]
        fused = [gen.start_decoding(prompts[:2]), gen.start_decoding(prompts[2:])]
        for step in range(5):
            if step % 2:  # beams reorder and repeat rows between steps
                for state in (solo[0], fused[0]):
                    state.select(torch.tensor([1, 1]))
            tokens = [state.next_lp.argmax(-1) for state in solo]
            for state, t in zip(solo, tokens):
                state.advance(t)
            advance_together(fused, tokens)
            for a, b in zip(solo, fused):  # the whole vocabulary, down to -40: relative
                assert torch.allclose(a.next_lp, b.next_lp, atol=TOL, rtol=TOL)
        with pytest.raises(ValueError, match="state 1 has 1 rows but got 2 tokens"):
            advance_together(fused, [tokens[0], torch.tensor([3, 4])])
        extended = [state.fork(torch.tensor([0, 0])).extend([[5, 6], [7]]) for state in fused]
        want = [state.fork(torch.tensor([0, 0])).extend([[5, 6], [7]]) for state in solo]
    for got, wanted in zip(extended, want):
        assert torch.allclose(got, wanted, atol=TOL, rtol=TOL)
