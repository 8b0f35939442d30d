"""The ScoringGenerator contract, and MarginalRAG over a generator with no language model.

``ScoringGeneratorContract`` is the suite every backend passes: subclass it
and provide a class-scoped ``generator`` fixture. HFGenerator passes it on a
tiny random Llama and BART; ``BigramGenerator`` (tests/bigram_generator.py,
a log-probability table, torch only) passes it too, and drives MarginalRAG's
RAG-Sequence and RAG-Token end to end, checked against the table by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from bigram_generator import END, BigramGenerator, brute_force_lp

from ragmix.errors import BadInputError
from ragmix.generation.base import (
    Decoder,
    ForcedScores,
    Generator,
    ScoringGenerator,
    TrainableGenerator,
)
from ragmix.generation.prompt import build_passage_prompt
from ragmix.marginal.model import MarginalRAG
from ragmix.marginal.scoring import with_end
from ragmix.testing import ScriptedGenerator
from ragmix.types import Hit

PROMPTS = ["where is lake varno?", "the lake varno lies north of kelm. how deep is it?", "hi"]
ANSWERS = ["north of kelm", "310 metres deep", "a lake"]
ROUND_TRIP = "the lake varno lies north of kelm"


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; the machine is shared
    yield torch
    torch.set_num_threads(threads)


def _ids(gen, prompts=PROMPTS, answers=ANSWERS):
    return [gen.encode_prompt(p) for p in prompts], [gen.encode_answer(a) for a in answers]


class ScoringGeneratorContract:
    """What MarginalRAG and RAG training rely on, for any ScoringGenerator."""

    @pytest.fixture(scope="class")
    @classmethod
    def generator(cls):
        raise NotImplementedError("subclasses return a ScoringGenerator")

    def test_is_a_scoring_generator(self, generator, torch) -> None:
        assert isinstance(generator, Generator) and isinstance(generator, ScoringGenerator)
        assert isinstance(generator.name, str) and generator.name
        state = generator.start_decoding(_ids(generator)[0])
        assert isinstance(state, Decoder) and state.rows == len(PROMPTS)

    def test_the_end_token_is_a_stop_token(self, generator) -> None:
        stops = generator.stop_token_ids
        assert isinstance(stops, frozenset) and all(isinstance(t, int) for t in stops)
        assert generator.end_token_id in stops
        assert with_end(generator, [5, 6]) == [5, 6, generator.end_token_id]

    def test_ascii_text_round_trips(self, generator) -> None:
        ids = generator.encode_answer(ROUND_TRIP)
        assert ids and all(isinstance(t, int) for t in ids)
        assert not set(ids) & generator.stop_token_ids  # the end token is not added
        assert generator.decode(ids).strip() == ROUND_TRIP
        assert generator.encode_prompt(ROUND_TRIP)  # never empty: it conditions the answer

    def test_score_ids_shapes_and_padding(self, generator, torch) -> None:
        prompts, conts = _ids(generator)
        with torch.inference_mode():
            scores = generator.score_ids(prompts, conts, full=True)
            plain = generator.score_ids(prompts, conts)
        width = max(map(len, conts))
        assert isinstance(scores, ForcedScores) and plain.full_lp is None
        assert tuple(scores.token_lp.shape) == tuple(scores.mask.shape) == (len(conts), width)
        assert scores.full_lp.shape[:2] == (len(conts), width)
        want = [[t < len(c) for t in range(width)] for c in conts]
        assert scores.mask.tolist() == want
        assert (scores.token_lp[~scores.mask] == 0).all() and (scores.token_lp <= 0).all()
        torch.testing.assert_close(plain.token_lp, scores.token_lp)
        with pytest.raises(BadInputError):
            generator.score_ids(prompts[:1], [[]])

    def test_score_ids_agrees_with_step_by_step_decoding(self, generator, torch) -> None:
        prompts, conts = _ids(generator)
        with torch.inference_mode():
            forced = generator.score_ids(prompts, conts, full=True)
            state = generator.start_decoding(prompts)
            for t in range(max(map(len, conts))):
                lp = state.next_lp  # (N, V)
                torch.testing.assert_close(lp.double().logsumexp(-1),
                                           torch.zeros(len(conts), dtype=torch.float64),
                                           atol=1e-5, rtol=0)
                for r, c in enumerate(conts):
                    if t < len(c):
                        torch.testing.assert_close(lp[r].double(), forced.full_lp[r, t].double(),
                                                   atol=1e-4, rtol=1e-4)
                        assert float(lp[r, c[t]]) == pytest.approx(
                            float(forced.token_lp[r, t]), abs=1e-4)
                state.advance(torch.tensor([c[min(t, len(c) - 1)] for c in conts]))

    def test_select_keeps_reorders_and_repeats_rows(self, generator, torch) -> None:
        prompts, conts = _ids(generator)
        order = [2, 0, 0]
        step = torch.tensor([conts[i][0] for i in order])
        with torch.inference_mode():
            state = generator.start_decoding(prompts)
            before = state.next_lp.clone()
            state.select(torch.tensor(order))
            assert state.rows == 3
            torch.testing.assert_close(state.next_lp, before[order])
            moved = state.advance(step)
            fresh = generator.start_decoding([prompts[i] for i in order])
            torch.testing.assert_close(moved, fresh.advance(step), atol=1e-5, rtol=1e-5)

    def test_fork_and_extend_score_from_the_cached_prompts(self, generator, torch) -> None:
        prompts, conts = _ids(generator)
        order = [1, 2, 0, 1]
        rows = [conts[i] for i in (0, 1, 2, 0)]
        with torch.inference_mode():
            state = generator.start_decoding(prompts)
            before = state.next_lp.clone()
            got = state.fork(torch.tensor(order)).extend(rows)  # (4, S)
            assert state.rows == len(prompts)  # the original is left as it was
            torch.testing.assert_close(state.next_lp, before)
            want = generator.score_ids([prompts[i] for i in order], rows).token_lp
            torch.testing.assert_close(got.double(), want.double(), atol=1e-4, rtol=1e-4)
            # after one decoded token, extend continues that answer
            first = [c[0] for c in conts]
            state.advance(torch.tensor(first))
            got = state.extend([c[1:] for c in conts])
            whole = generator.score_ids(prompts, conts).token_lp[:, 1:]
        torch.testing.assert_close(got.double(), whole.double(), atol=1e-4, rtol=1e-4)

    def test_token_logprobs_are_score_ids_on_text(self, generator, torch) -> None:
        prompts, conts = _ids(generator)
        got = generator.token_logprobs(PROMPTS, ANSWERS)
        with torch.inference_mode():
            scores = generator.score_ids(prompts, conts).token_lp.double()
        for row, c, lp in zip(scores, conts, got):
            assert lp.shape == (len(c),)
            np.testing.assert_allclose(lp, row[: len(c)].numpy(), atol=1e-5)

    def test_generate_is_greedy_decoding(self, generator, torch) -> None:
        tokens: list[int] = []
        with torch.inference_mode():
            state = generator.start_decoding([generator.encode_prompt(PROMPTS[0])])
            for _ in range(6):
                token = int(state.next_lp[0].argmax())
                if token in generator.stop_token_ids:
                    break
                tokens.append(token)
                state.advance(torch.tensor([token]))
        want = generator.decode(tokens).strip()
        assert generator.generate(PROMPTS[0], max_new_tokens=6) == want


class TestHFGenerator(ScoringGeneratorContract):
    @pytest.fixture(scope="class", params=["llama", "bart"])
    @classmethod
    def generator(cls, request, torch):
        pytest.importorskip("transformers")
        from tiny_models import minilm_tokenizer, tiny_bart

        from ragmix.generation.hf import HFGenerator
        from ragmix.testing import tiny_random_generator

        if request.param == "llama":
            return tiny_random_generator()
        tok = minilm_tokenizer()
        return HFGenerator(tiny_bart(torch, tok), tok, name="tiny-bart")

    def test_is_trainable(self, generator) -> None:
        assert isinstance(generator, TrainableGenerator)


class TestBigramGenerator(ScoringGeneratorContract):
    @pytest.fixture(scope="class")
    @classmethod
    def generator(cls, torch):
        return BigramGenerator()

    def test_is_not_trainable(self, generator) -> None:
        assert not isinstance(generator, TrainableGenerator)  # no model, no tokenizer


# -- MarginalRAG over the table, against a computation by hand ------------------------

QUESTION = "where is lake varno?"
TEXTS = ["the lake varno lies north of kelm", "paris is the capital of france",
         "rivers and the towns that lie on their shores"]
SCORES = [2.0, 1.2, 0.5]
TAU = 1.5


class FakeSearcher:
    hits = [Hit(i, f"d{i}", t, s, 0.0, i + 1) for i, (t, s) in enumerate(zip(TEXTS, SCORES))]

    def search(self, query: str, k: int, *, mode: str) -> list[Hit]:
        return self.hits[:k]


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("mode, beams", [("rag-sequence", 1), ("rag-sequence", 3),
                                         ("rag-token", 1), ("rag-token", 3)])
def test_marginal_rag_over_the_table_equals_the_sum_by_hand(torch, mode, beams, seed) -> None:
    gen = BigramGenerator(seed=seed)
    budget = 6
    rag = MarginalRAG(FakeSearcher(), gen, mode=mode, k=3, retrieval="bm25", tau=TAU,
                      beams=beams, max_new_tokens=budget)
    answer = rag.ask(QUESTION, explain=True)
    ids = gen.encode_answer("".join(answer.tokens))  # one character per token
    assert len(ids) == len(answer.tokens) and gen.decode(ids).strip() == answer.text
    finished = len(ids) < budget  # cut-off answers have exactly max_new_tokens tokens
    prompts = [gen.encode_prompt(build_passage_prompt(QUESTION, h)) for h in FakeSearcher.hits]
    prior = np.log(_softmax(np.array(SCORES) / TAU))  # (K,) log p(z|x)
    scored = ids + [END] if finished else ids
    per = np.stack([brute_force_lp(gen, p, scored) for p in prompts])  # (K, T) log p(y_t|x,z,y<t)
    n = len(ids)
    if mode == "rag-sequence":  # p(y|x) = sum_z p(z|x) prod_t p(y_t | x, z, y_<t)
        want = _logsumexp(prior + per.sum(1))
        posterior = _softmax(prior + per.sum(1))
        running = _softmax(prior[:, None] + per[:, :n].cumsum(1), axis=0).T  # (T, K)
    else:  # p(y|x) = prod_t sum_z p(z|x) p(y_t | x, z, y_<t)
        want = _logsumexp(prior[:, None] + per, axis=0).sum()
        posterior = _softmax(prior + per[:, :n].sum(1))
        running = _softmax(prior[:, None] + per[:, :n], axis=0).T  # (T, K)
    assert answer.prior == pytest.approx(np.exp(prior).tolist(), abs=1e-12)
    assert answer.logprob == pytest.approx(float(want), abs=1e-9)
    # logs, so that the near-zero posteriors count too
    np.testing.assert_allclose(np.log(answer.posterior), np.log(posterior), atol=1e-7)
    if n:
        np.testing.assert_allclose(np.array(answer.token_posteriors), running, atol=1e-9)
    else:  # the answer is the end token alone
        assert answer.token_posteriors == () and answer.posterior == pytest.approx(
            answer.prior if mode == "rag-token" else posterior.tolist())
    if mode == "rag-token" and beams == 1:  # greedy: each token is the mixture's argmax
        table = gen.table.numpy()  # (keys, V, V)
        for t, token in enumerate(scored):
            rows = np.stack([table[gen.key(p), (p + scored[:t])[-1]] for p in prompts])  # (K, V)
            assert int(_logsumexp(prior[:, None] + rows, axis=0).argmax()) == token


def test_generators_without_scores_are_refused_by_name(torch) -> None:
    with pytest.raises(BadInputError, match="ScoringGenerator.*got ScriptedGenerator"):
        MarginalRAG(FakeSearcher(), ScriptedGenerator("Paris."))
    from ragmix.training.rag import RagTrainer
    from ragmix.training.rag_config import RagTrainConfig

    with pytest.raises(BadInputError, match="TrainableGenerator.*got BigramGenerator"):
        RagTrainer(None, BigramGenerator(), [object()], RagTrainConfig())
