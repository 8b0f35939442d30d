"""Grounded decoding: spans of the passages only, scored as the constrained generator scores them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiny_models import torch_fixture

torch_ = pytest.fixture(torch_fixture, name="torch")


@pytest.fixture(scope="module")
def gen():
    pytest.importorskip("transformers")
    from ragmix.testing import tiny_random_generator

    return tiny_random_generator(byte_level=True, seed=3)


def automaton(gen, texts):
    from ragmix.generation.spans import SpanAutomaton, vocabulary_of

    return SpanAutomaton(texts, vocabulary_of(gen.tokenizer))


def brute_force(gen, prompt, spans, max_tokens, torch):
    """Every token sequence the automaton ends, of at most ``max_tokens`` tokens, with its
    constrained and raw log-probability (end included), from one forward pass per sequence."""
    stops = sorted(gen.stop_token_ids)
    out = {}
    stack = [(spans.start(), ())]
    while stack:
        state, tokens = stack.pop()
        logits = gen.model(input_ids=torch.tensor([list(prompt) + list(tokens)])).logits[0]
        lps = logits.float().log_softmax(-1)[len(prompt) - 1 :].double()  # (T + 1, V)
        con = raw = 0.0
        walk = spans.start()
        for i, token in enumerate(tokens + (None,)):
            nexts = spans.step(walk)
            ends = i > 0 and spans.can_end(walk)
            allowed = list(nexts) + (stops if ends else [])
            norm = float(lps[i, allowed].logsumexp(0))
            picked = float(lps[i, stops].logsumexp(0)) if token is None else float(lps[i, token])
            con += picked - norm
            raw += picked
            if token is not None:
                walk = nexts[token]
        if tokens and spans.can_end(state):
            out[tokens] = (con, raw)
        if len(tokens) + 1 < max_tokens:
            for token, nxt in spans.step(state).items():
                stack.append((nxt, tokens + (token,)))
    return out


def test_beam_scores_equal_brute_force_and_the_marginal_sums_them(gen, torch):
    from ragmix.marginal.grounded import grounded_decode

    texts = ["Paris is big", "Denver 50"]
    prompts = [gen.encode_prompt(f"Passage: {t}\n\nQuestion: where?") for t in texts]
    automata = [automaton(gen, [t]) for t in texts]
    doc_lp = torch.tensor([0.3, 0.7], dtype=torch.float64).log()
    with torch.inference_mode():
        exact = [brute_force(gen, p, a, 4, torch) for p, a in zip(prompts, automata)]
    width = 2000  # wider than the prefixes of at most 3 tokens: beam search is exhaustive
    for scoring, which in (("constrained", 0), ("raw", 1)):
        found = grounded_decode(gen, prompts, automata, doc_lp, text_ids=[[0], [1]],
                                max_new_tokens=4, beams=width, scoring=scoring)
        from ragmix.evaluation.qa_metrics import normalize_answer

        expected: dict[str, list[float]] = {}
        for z, (row, a) in enumerate(zip(exact, automata)):
            for tokens, scores in row.items():
                span = a.spans(_walk(a, tokens))[0]
                key = normalize_answer(texts[z][span.start : span.end])
                if key:
                    expected.setdefault(key, []).append(float(doc_lp[z]) + scores[which])
        got = {normalize_answer(c.text): c.logprob for c in found}
        assert set(got) == set(expected)
        for key, parts in expected.items():
            assert got[key] == pytest.approx(float(torch.tensor(parts).logsumexp(0)), rel=1e-6, abs=1e-5)
    # constrained scores are a distribution over the spans a row can end (within the budget)
    total = torch.tensor([s[0] for s in exact[0].values()]).logsumexp(0)
    assert float(total) <= 1e-9


def _walk(spans, tokens):
    state = spans.start()
    for token in tokens:
        state = spans.step(state)[token]
    return state


words = st.sampled_from(["Paris", "is", "the", "capital", "1971", "café", "Denver", "won",
                         "Super", "Bowl", "50", "in", "2016,", "naïve."])
passage = st.lists(words, min_size=1, max_size=12).map(" ".join)


@settings(max_examples=15, deadline=None)
@given(texts=st.lists(passage, min_size=1, max_size=3))
def test_every_answer_is_a_span_of_its_passage(gen, texts):
    import torch

    from ragmix.marginal.grounded import grounded_decode

    from ragmix.evaluation.qa_metrics import normalize_answer

    prompts = [gen.encode_prompt(f"Passage: {t}\n\nQuestion: what?") for t in texts]
    automata = [automaton(gen, [t]) for t in texts]
    doc_lp = torch.full((len(texts),), -math.log(len(texts)), dtype=torch.float64)
    found = grounded_decode(gen, prompts, automata, doc_lp,
                            text_ids=[[z] for z in range(len(texts))], max_new_tokens=8, beams=3)
    # only passages of articles alone ("the") have no span that says anything
    assert found or not any(normalize_answer(t) for t in texts)
    for candidate in found:
        assert candidate.spans
        for span in candidate.spans:
            assert texts[span.text][span.start : span.end].strip()
        best = candidate.spans[0]
        assert texts[best.text][best.start : best.end] == candidate.text
        assert candidate.text in texts[best.text]


def test_one_row_over_all_passages_cites_where_the_span_stands(gen, torch):
    from ragmix.marginal.grounded import grounded_decode

    texts = ["Paris is big", "Paris won in 2016,"]
    prompt = gen.encode_prompt("[1] Paris is big\n[2] Paris won in 2016,\n\nQuestion: what?")
    found = grounded_decode(gen, [prompt], [automaton(gen, texts)],
                            torch.zeros(1, dtype=torch.float64), text_ids=[[0, 1]],
                            max_new_tokens=6, beams=8)
    from ragmix.evaluation.qa_metrics import normalize_answer

    for candidate in found:  # "2016," and "2016" are one answer, quoted at both places
        for span in candidate.spans:
            quoted = texts[span.text][span.start : span.end]
            assert normalize_answer(quoted) == normalize_answer(candidate.text)
    paris = [c for c in found if c.text == "Paris"]
    if paris:  # a span found in both passages names both
        assert {s.text for s in paris[0].spans} == {0, 1}


def test_bad_scoring_and_mismatched_rows_are_refused(gen, torch):
    from ragmix.errors import BadInputError
    from ragmix.marginal.grounded import grounded_decode

    a = automaton(gen, ["Paris"])
    p = gen.encode_prompt("Passage: Paris")
    with pytest.raises(BadInputError, match="scoring must be one of"):
        grounded_decode(gen, [p], [a], torch.zeros(1), text_ids=[[0]], scoring="best")
    with pytest.raises(BadInputError, match="one of each per row"):
        grounded_decode(gen, [p, p], [a], torch.zeros(2), text_ids=[[0]])


TEXTS = {"varno": "Lake   Varno is 310 metres deep.\n\nIt froze in 1971.",
         "kelm": "Kelm lies on the shore of Lake Varno, near café Naïve."}


@pytest.fixture()
def collection(tmp_path):
    from ragmix import Collection, Document
    from ragmix.chunking import make_chunker

    col = Collection.create(tmp_path / "col", encoder="hashing-256",
                            chunker=make_chunker("words", size=5))
    col.add_documents([Document(doc_id, text, f"{doc_id}.md", title=doc_id.title())
                       for doc_id, text in TEXTS.items()])
    yield col
    col.close()


@pytest.mark.parametrize("scoring", ["constrained", "pmi"])
@pytest.mark.parametrize("mode", ["stuff", "rag-sequence"])
def test_grounded_answers_quote_their_passages_exactly(gen, collection, mode, scoring):
    from ragmix.generation import RAG
    from ragmix.marginal.model import MarginalRAG

    if mode == "stuff":
        rag = RAG(collection, gen, k=2, grounded=True, beams=3, max_new_tokens=8,
                  scoring=scoring)
    else:
        rag = MarginalRAG(collection, gen, mode=mode, k=2, decoding="grounded", beams=3,
                          max_new_tokens=8, scoring=scoring)
    streamed = []
    answer = rag.ask("How deep is Lake Varno?", on_token=streamed.append)
    assert answer.decoding == "grounded" and answer.text and answer.quotes
    assert streamed == [answer.text]
    from ragmix.evaluation.qa_metrics import normalize_answer

    for n, quote in enumerate(answer.quotes):
        hit = answer.hits[quote.hit - 1]
        quoted = hit.text[quote.start : quote.end]
        assert quote.doc_id == hit.doc_id
        assert TEXTS[hit.doc_id][quote.doc_start : quote.doc_end] == quoted
        # the first quote is the answer itself; the others the same answer elsewhere
        if n == 0:
            assert " ".join(quoted.split()) == answer.text
        assert normalize_answer(quoted) == normalize_answer(answer.text)
    assert answer.cited[0] == answer.quotes[0].hit
    if mode == "rag-sequence":
        assert sum(answer.posterior) == pytest.approx(1.0)


def test_grounded_needs_a_mode_and_a_generator_that_can(gen, collection):
    from ragmix.errors import BadInputError
    from ragmix.generation import RAG
    from ragmix.marginal.model import MarginalRAG
    from ragmix.testing import ScriptedGenerator

    with pytest.raises(BadInputError, match="grounded decoding works with modes"):
        MarginalRAG(collection, gen, mode="rag-token", decoding="grounded")
    with pytest.raises(BadInputError, match="ScoringGenerator"):
        RAG(collection, ScriptedGenerator("x"), grounded=True)
    with pytest.raises(BadInputError, match="scoring must be one of"):
        MarginalRAG(collection, gen, decoding="grounded", scoring="best")


@pytest.mark.parametrize("qa_mode", ["stuff-grounded", "rag-sequence-grounded"])
def test_eval_qa_scores_grounded_answers(gen, collection, qa_mode):
    from ragmix.evaluation.datasets import QAExample
    from ragmix.evaluation.run_qa import evaluate_qa
    from ragmix.modes import split_qa_mode

    generation, decoding = split_qa_mode(qa_mode)
    questions = [QAExample("q1", "How deep is Lake Varno?", ("310 metres",)),
                 QAExample("q2", "When did Lake Varno freeze?", ("1971",))]
    report = evaluate_qa(collection, gen, questions, mode="bm25", k=2, generation=generation,
                         decoding=decoding, beams=2, max_new_tokens=8)
    assert {"em", "f1", "contains"} <= set(report.metrics)
    passages = " ".join(" ".join(t.split()) for t in TEXTS.values())
    for result in report.results:
        assert result.prediction and result.prediction in passages


def test_grounded_needs_a_tokenizer(torch):
    from bigram_generator import BigramGenerator

    from ragmix.errors import BadInputError
    from ragmix.marginal.grounded_answer import grounded_answer
    from ragmix.types import Hit

    hit = Hit(chunk_id=0, doc_id="d", text="Paris is big.", score=1.0, prob=1.0, rank=1)
    with pytest.raises(BadInputError, match="needs the generator's tokenizer"):
        grounded_answer(BigramGenerator(), "Where?", [hit], mode="stuff")


def test_pmi_is_zero_when_the_null_prompt_is_the_prompt(gen, torch):
    """The null pass scores exactly the tokens and end that the beams scored."""
    from ragmix.marginal.grounded import grounded_decode

    texts = ["Paris is big", "Denver won in 2016,"]
    prompts = [gen.encode_prompt(f"Passage: {t}\n\nQuestion: where?") for t in texts]
    doc_lp = torch.tensor([0.5, 0.5], dtype=torch.float64).log()
    found = grounded_decode(gen, prompts, [automaton(gen, [t]) for t in texts], doc_lp,
                            text_ids=[[0], [1]], max_new_tokens=6, beams=4, scoring="pmi",
                            null_prompts=prompts)
    assert found
    for candidate in found:
        proposed = candidate.raw_per_row > -math.inf
        assert candidate.logprob == pytest.approx(float(doc_lp[proposed].logsumexp(0)), abs=1e-4)


def test_pmi_needs_null_prompts(gen, torch):
    from ragmix.errors import BadInputError
    from ragmix.marginal.grounded import grounded_decode

    p = gen.encode_prompt("Passage: Paris")
    with pytest.raises(BadInputError, match="null_prompts"):
        grounded_decode(gen, [p], [automaton(gen, ["Paris"])], torch.zeros(1), text_ids=[[0]],
                        scoring="pmi")


def test_null_scores_equal_teacher_forced_scores_of_the_null_prompts(gen, torch):
    """Forking the null prompts' rows and extending them scores what score_ids scores."""
    from ragmix.marginal.grounded import _with_null_scores, span_beams
    from ragmix.marginal.scoring import with_end

    texts = ["Paris is big", "Denver won in 2016,"]
    prompts = [gen.encode_prompt(f"Passage: {t}\n\nQuestion: where?") for t in texts]
    nulls = [gen.encode_prompt(f"Passage: {t}\n\nQuestion: N/A") for t in texts]
    with torch.inference_mode():
        ended = span_beams(gen.start_decoding(prompts), [automaton(gen, [t]) for t in texts],
                           sorted(gen.stop_token_ids), 6, 3, scoring="raw")
        scored = _with_null_scores(gen, nulls, ended, None)
    pairs = [(z, h) for z, row in enumerate(scored) for h in row]
    assert len(pairs) >= 4
    want = gen.score_ids([nulls[z] for z, _ in pairs],
                         [with_end(gen, h.tokens) for _, h in pairs]).token_lp.double().sum(-1)
    got = [h.null_logprob for _, h in pairs]
    assert got == pytest.approx(want.tolist(), abs=1e-4)
    assert [h.tokens for _, h in pairs] == [h.tokens for row in ended for h in row]
