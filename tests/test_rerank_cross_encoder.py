"""The cross-encoder scorer: the contract, the logit it returns, and the folders it refuses."""

from __future__ import annotations

import string

import numpy as np
import pytest
from reranker_contract import QUERY, TEXTS, ScorerContract

from ragmix.errors import BadInputError

WORDS = sorted(set(" ".join([QUERY, *TEXTS]).lower().replace(".", " ").replace("?", " ").split()))


def tiny_wordpiece(words=()):
    """A WordPiece tokenizer of a few whole words plus single characters, so any text encodes."""
    from transformers import BertTokenizer

    chars = string.ascii_lowercase + string.digits + string.punctuation
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]
    pieces += [w for w in dict.fromkeys([*WORDS, *words]) if w not in pieces]
    return BertTokenizer(vocab={piece: i for i, piece in enumerate(pieces)})


def tiny_cross_encoder(torch, folder, *, words=(), num_labels=1, seed=0):
    """A random 2-layer BERT with a ``num_labels`` head and a tiny tokenizer, saved to ``folder``."""
    from transformers import BertConfig, BertForSequenceClassification

    from ragmix.generation.hf import quiet_progress_bars

    tokenizer = tiny_wordpiece(words)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, num_labels=num_labels,
                        max_position_embeddings=128, initializer_range=0.2)
    model = BertForSequenceClassification(config).eval()
    with quiet_progress_bars():
        model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer, folder


@pytest.fixture(scope="module")
def folder(torch, tmp_path_factory):
    return tiny_cross_encoder(torch, tmp_path_factory.mktemp("ce") / "tiny-ce")[2]


class TestCrossEncoderScorer(ScorerContract):
    @pytest.fixture
    def scorer(self, folder):
        from ragmix.rerank.cross_encoder import CrossEncoderScorer

        return CrossEncoderScorer(folder, dtype="float32", batch_size=2, max_length=64)


def direct_logits(torch, folder, query, texts, *, max_length=64):
    """The reference: the model run on one (query, passage) pair at a time, (n, num_labels)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return torch.cat([model(**tokenizer(query, t, truncation="only_second",
                                             max_length=max_length, return_tensors="pt")).logits
                          for t in texts]).numpy()


def test_score_is_the_raw_logit_of_each_pair(torch, folder):
    from ragmix.rerank.cross_encoder import CrossEncoderScorer

    scores = CrossEncoderScorer(folder, dtype="float32", batch_size=3).score(QUERY, TEXTS)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, direct_logits(torch, folder, QUERY, TEXTS)[:, 0],
                               rtol=1e-5, atol=1e-5)
    assert np.ptp(scores) > 1e-3  # a real spread, so the order checks mean something


def test_bfloat16_holds_bf16_weights_and_scores_close_to_float32(torch, folder):
    from ragmix.rerank.cross_encoder import CrossEncoderScorer

    scorer = CrossEncoderScorer(folder, dtype="bfloat16", batch_size=3)
    assert {p.dtype for p in scorer.model.parameters()} == {torch.bfloat16}
    scores = scorer.score(QUERY, TEXTS)
    assert scores.dtype == np.float64
    reference = direct_logits(torch, folder, QUERY, TEXTS)[:, 0]
    np.testing.assert_allclose(scores, reference, atol=0.05 * np.ptp(reference))
    float32 = CrossEncoderScorer(folder, dtype="float32")
    assert {p.dtype for p in float32.model.parameters()} == {torch.float32}


def test_two_labels_score_the_log_odds(torch, tmp_path):
    from ragmix.rerank.cross_encoder import CrossEncoderScorer

    *_, folder = tiny_cross_encoder(torch, tmp_path / "two", num_labels=2)
    logits = direct_logits(torch, folder, QUERY, TEXTS)  # (n, 2)
    scores = CrossEncoderScorer(folder, dtype="float32").score(QUERY, TEXTS)
    np.testing.assert_allclose(scores, logits[:, 1] - logits[:, 0], rtol=1e-5, atol=1e-5)


def test_passages_are_cut_and_long_queries_do_not_fail(torch, folder):
    from ragmix.rerank.cross_encoder import CrossEncoderScorer

    scorer = CrossEncoderScorer(folder, dtype="float32", max_length=16)
    long_text = TEXTS[0] + " filler" * 200
    np.testing.assert_allclose(scorer.score(QUERY, [long_text]),
                               direct_logits(torch, folder, QUERY, [long_text], max_length=16)[:, 0],
                               rtol=1e-5, atol=1e-5)
    assert np.isfinite(scorer.score(QUERY * 10, TEXTS)).all()  # longer than max_length itself


def test_a_sentence_transformers_cross_encoder_folder_scores_as_it_does(torch, folder, tmp_path):
    from sentence_transformers import CrossEncoder

    from ragmix.rerank.cross_encoder import CrossEncoderScorer

    CrossEncoder(str(folder), device="cpu", max_length=64).save(str(tmp_path / "st-ce"))
    ours = CrossEncoderScorer(tmp_path / "st-ce", dtype="float32").score(QUERY, TEXTS)
    theirs = CrossEncoder(str(tmp_path / "st-ce"), device="cpu").predict(
        [(QUERY, t) for t in TEXTS], activation_fn=torch.nn.Identity())
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_load_scorer_builds_it_by_name(folder):
    from ragmix.rerank import load_reranker, load_scorer
    from ragmix.rerank.cross_encoder import CrossEncoderScorer

    scorer = load_scorer("cross-encoder", model=folder, dtype="float32")
    assert isinstance(scorer, CrossEncoderScorer) and scorer.name == "cross-encoder:tiny-ce"
    assert load_reranker("cross-encoder", model=str(folder), weight=0.5).name == \
        "cross-encoder:tiny-ce@0.5"


def test_bfloat16_scores_stay_close_to_float32(folder):
    from ragmix.rerank.cross_encoder import CrossEncoderScorer

    exact = CrossEncoderScorer(folder, dtype="float32").score(QUERY, TEXTS)
    rough = CrossEncoderScorer(folder, dtype="bfloat16").score(QUERY, TEXTS)
    np.testing.assert_allclose(rough, exact, atol=0.05 * np.abs(exact).max() + 0.05)


def test_folders_that_are_not_cross_encoders_are_refused(torch, tmp_path):
    from transformers import BertConfig, BertModel

    from ragmix.rerank.cross_encoder import CrossEncoderScorer

    missing = tmp_path / "nowhere"
    with pytest.raises(BadInputError, match="nowhere.*does not exist.*ragmix train reranker"):
        CrossEncoderScorer(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="empty.*no config.json"):
        CrossEncoderScorer(tmp_path / "empty")
    BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=8)).save_pretrained(tmp_path / "bi")
    with pytest.raises(BadInputError, match="bi.*BertModel.*not a sequence-classification"):
        CrossEncoderScorer(tmp_path / "bi")


def test_bad_options_are_refused(folder):
    from ragmix.rerank.cross_encoder import CrossEncoderScorer

    with pytest.raises(BadInputError, match="batch_size must be an integer >= 1, got 0"):
        CrossEncoderScorer(folder, batch_size=0)
    with pytest.raises(BadInputError, match="dtype must be one of"):
        CrossEncoderScorer(folder, dtype="float16")
