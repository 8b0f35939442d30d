"""Evaluation metrics: hand-computed cases, and pytrec_eval / the SQuAD script as references."""

from __future__ import annotations

import math
import random
import re
import string
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragmix.errors import BadInputError
from ragmix.evaluation.qa_metrics import (
    answer_in_passages, contains, exact_match, f1, normalize_answer, regex_match,
)
from ragmix.evaluation.retrieval_metrics import (
    evaluate_run, mrr_at_k, ndcg_at_k, rank_documents, recall_at_k,
)

# -- retrieval: hand-computed --------------------------------------------------------------

QRELS = {"q1": {"a": 2, "b": 1, "c": 0}, "q2": {"d": 1}, "q3": {"e": 1}}
RUN = {
    "q1": {"x": 0.9, "b": 0.8, "a": 0.7, "c": 0.6},  # ranks: x b a c
    "q2": {"y": 0.5, "z": 0.4},  # the relevant d is not retrieved
    "other": {"a": 1.0},  # not judged: ignored
}  # q3 has no run entry: it scores 0 everywhere


def test_ndcg_hand_computed() -> None:
    # q1 top 3: gains x=0, b=1, a=2 -> DCG = 0/log2(2) + 1/log2(3) + 2/log2(4) = 0.63093 + 1
    #           ideal a=2, b=1, c=0 -> IDCG = 2/log2(2) + 1/log2(3) = 2.63093
    dcg, idcg = 1 / math.log2(3) + 2 / 2, 2 + 1 / math.log2(3)
    assert ndcg_at_k(RUN, QRELS, 10)["q1"] == pytest.approx(dcg / idcg)  # 0.6199
    # top 2: DCG = 1/log2(3); IDCG@2 is the same 2.63093
    assert ndcg_at_k(RUN, QRELS, 2)["q1"] == pytest.approx((1 / math.log2(3)) / idcg)
    # top 1: x is not relevant
    assert ndcg_at_k(RUN, QRELS, 1)["q1"] == 0.0
    assert ndcg_at_k(RUN, QRELS, 10)["q2"] == 0.0 and ndcg_at_k(RUN, QRELS, 10)["q3"] == 0.0
    assert set(ndcg_at_k(RUN, QRELS, 10)) == {"q1", "q2", "q3"}


def test_mrr_and_recall_hand_computed() -> None:
    # q1: first relevant (b, rel 1) at rank 2 -> 1/2; cut at 1 -> 0
    assert mrr_at_k(RUN, QRELS, 10) == {"q1": 0.5, "q2": 0.0, "q3": 0.0}
    assert mrr_at_k(RUN, QRELS, 1)["q1"] == 0.0
    # q1 relevant = {a, b} (c is judged 0): top 2 holds b -> 1/2, top 3 holds both -> 1
    assert recall_at_k(RUN, QRELS, 2)["q1"] == 0.5
    assert recall_at_k(RUN, QRELS, 3)["q1"] == 1.0


def test_evaluate_run_means_and_missing() -> None:
    report = evaluate_run(RUN, QRELS, ks=(10, 1))
    # means over all three judged queries: q1's value / 3
    assert report.metrics["mrr@10"] == pytest.approx(0.5 / 3)
    assert report.metrics["recall@10"] == pytest.approx(1 / 3)
    assert report.missing == ("q3",) and report.n_queries == 3
    assert list(report.per_query["q1"]) == [
        "ndcg@1", "ndcg@10", "mrr@1", "mrr@10", "recall@1", "recall@10"]
    data = report.to_dict()
    assert data["per_query"]["q2"]["ndcg@10"] == 0.0 and "latency_ms" not in data


def test_ties_follow_trec_eval() -> None:
    # equal scores: document id descending (strcmp order, so "9" > "10")
    assert rank_documents({"a": 1.0, "c": 1.0, "b": 1.0}) == ["c", "b", "a"]
    assert rank_documents({"10": 1.0, "9": 1.0}) == ["9", "10"]
    # scores equal at float32 precision are ties too; 1e-6 apart is not
    assert rank_documents({"a": 1.0 + 1e-9, "b": 1.0}) == ["b", "a"]
    assert rank_documents({"a": 1.0 + 1e-6, "b": 1.0}) == ["a", "b"]


def test_negative_judgements_gain_nothing() -> None:
    # a (-1) at rank 1, b (1) at rank 2: DCG = 1/log2(3), IDCG = 1
    assert ndcg_at_k({"q": {"a": 2.0, "b": 1.0}}, {"q": {"a": -1, "b": 1}}, 10)["q"] == \
        pytest.approx(1 / math.log2(3))


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_bad_k_is_refused(k) -> None:
    with pytest.raises(BadInputError, match="k must be"):
        ndcg_at_k(RUN, QRELS, k)
    with pytest.raises(BadInputError, match="k must be"):
        evaluate_run(RUN, QRELS, ks=(k,))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(BadInputError, match="qrels are empty"):
        evaluate_run(RUN, {})
    with pytest.raises(BadInputError, match="'a' must be a number"):
        evaluate_run({"q1": {"a": float("nan")}}, QRELS)


# -- retrieval: against pytrec_eval (trec_eval) ------------------------------------------------

def _random_case(rng: random.Random) -> tuple[dict, dict]:
    docs = [f"d{i}" for i in range(rng.randint(1, 30))] + ["7", "10", "9"]
    qrels, run = {}, {}
    for q in range(rng.randint(1, 8)):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, min(6, len(docs))))
        qrels[qid] = {d: rng.choice([0, 1, 1, 2, 3]) for d in judged}
        if rng.random() < 0.9:  # some judged queries are never run
            retrieved = rng.sample(docs, rng.randint(1, len(docs)))
            # few distinct scores, so ties are common; some differ only past float32 precision
            run[qid] = {d: rng.choice([0.5, 1.0, 1.0 + 1e-9, 2.0, rng.random()]) for d in retrieved}
    return run, qrels


def test_matches_pytrec_eval_on_random_runs() -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    ks = (1, 3, 5, 10, 20)
    measures = {f"{m}.{','.join(map(str, ks))}" for m in ("ndcg_cut", "recall", "success")}
    rng = random.Random(0)
    for _ in range(200):
        run, qrels = _random_case(rng)
        ref = pytrec_eval.RelevanceEvaluator(qrels, measures | {"recip_rank"}).evaluate(run)
        report = evaluate_run(run, qrels, ks)
        for qid, mine in report.per_query.items():
            if qid not in run:  # pytrec_eval leaves unrun queries out; trec_eval -c gives 0
                assert qid not in ref and all(v == 0.0 for v in mine.values())
                continue
            r = ref[qid]
            for k in ks:
                assert mine[f"ndcg@{k}"] == pytest.approx(r[f"ndcg_cut_{k}"], abs=1e-12)
                assert mine[f"recall@{k}"] == pytest.approx(r[f"recall_{k}"], abs=1e-12)
                # MRR@k = reciprocal rank when a relevant document is in the top k
                assert mine[f"mrr@{k}"] == pytest.approx(r["recip_rank"] * r[f"success_{k}"],
                                                         abs=1e-12)


# -- QA: the official SQuAD v1.1 script as the reference ----------------------------------------

def _squad_normalize(s):  # evaluate-v1.1.py, verbatim apart from the names
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def _squad_f1(prediction, ground_truth):
    prediction_tokens = _squad_normalize(prediction).split()
    ground_truth_tokens = _squad_normalize(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


# words and pieces that the normalisation treats specially: articles, punctuation, case
TEXT = st.lists(st.sampled_from(["the", "a", "an", "The", "An", "theatre", "a.", "b", "N.B.",
                                 "!", "-", " ", "\t", "É", "é", "Ænt"]),
                max_size=10).map("".join)


@settings(max_examples=300, deadline=None)
@given(TEXT, st.lists(TEXT, min_size=1, max_size=3))
def test_squad_metrics_match_official_script(prediction: str, golds: list[str]) -> None:
    assert normalize_answer(prediction) == _squad_normalize(prediction)
    assert exact_match(prediction, golds) == float(
        max(_squad_normalize(prediction) == _squad_normalize(g) for g in golds))
    assert f1(prediction, golds) == pytest.approx(max(_squad_f1(prediction, g) for g in golds))


@pytest.mark.parametrize("prediction, golds, em, f1_score", [
    ("The Denver Broncos", ["Denver Broncos"], 1.0, 1.0),  # article dropped
    ("denver broncos!", ["Denver Broncos"], 1.0, 1.0),  # case and punctuation
    ("Broncos", ["Denver Broncos"], 0.0, 2 * 1.0 * 0.5 / 1.5),  # P = 1, R = 1/2 -> 2/3
    ("Carolina Panthers", ["Denver Broncos", "Panthers"], 0.0, 2 * 0.5 * 1.0 / 1.5),  # best gold
    ("the", ["a"], 1.0, 0.0),  # both normalise to "": equal, but no tokens to overlap (v1.1)
    ("U.S.", ["US"], 1.0, 1.0),  # punctuation is deleted, not spaced
    ("state-of-the-art", ["state of the art"], 0.0, 0.0),  # "stateoftheart" vs "state of art"
])
def test_squad_cases(prediction, golds, em, f1_score) -> None:
    assert exact_match(prediction, golds) == em
    assert f1(prediction, golds) == pytest.approx(f1_score)


def test_answers_must_be_given() -> None:
    with pytest.raises(BadInputError, match="at least one gold answer"):
        f1("x", [])
    with pytest.raises(BadInputError, match="must be strings"):
        exact_match("x", [3])
    assert exact_match("Paris", "paris") == 1.0  # a lone string is one gold answer


def test_regex_match_curated_trec_style() -> None:
    assert regex_match("Gagarin", [r"(Yuri\s+)?Gagarin"]) == 1.0
    assert regex_match("yuri  gagarin was first", [r"(Yuri\s+)?Gagarin"]) == 1.0  # prefix match
    assert regex_match("It was Gagarin", [r"Gagarin"]) == 0.0  # anchored, as in DrQA
    assert regex_match("1961", [r"x", r"19[0-9]{2}"]) == 1.0
    with pytest.raises(BadInputError, match="not a valid regular expression"):
        regex_match("x", ["(unclosed"])


def _brute_contains(prediction: str, gold: str) -> bool:
    """The gold tokens are a run of the prediction's; an empty gold needs an empty prediction."""
    pred, want = _squad_normalize(prediction).split(), _squad_normalize(gold).split()
    if not want:
        return not pred
    return any(pred[i:i + len(want)] == want for i in range(len(pred) - len(want) + 1))


# whole words, so that gold answers often do occur in predictions, and near misses ("8", "1987")
WORDS = st.lists(st.sampled_from(["paris", "Paris,", "france", "8", "1987", "8.", "the", "a",
                                  "b", "b.", "-", "É", "é"]), max_size=8).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(WORDS, TEXT), st.lists(st.one_of(WORDS, TEXT), min_size=1, max_size=3))
def test_contains_is_token_run_containment(prediction: str, golds: list[str]) -> None:
    assert contains(prediction, golds) == float(any(_brute_contains(prediction, g) for g in golds))
    assert contains(prediction, golds) >= exact_match(prediction, golds)  # EM made lenient


@pytest.mark.parametrize("prediction, golds, expected", [
    ("It is Paris, France.", ["Paris"], 1.0),
    ("paris", ["It is Paris"], 0.0),  # the gold must be inside the prediction, not around it
    ("Founded in 1987", ["8"], 0.0),  # whole tokens only
    ("In October 1973 or so", ["october 1973"], 1.0),  # a run of several tokens
    ("1973 October", ["October 1973"], 0.0),  # in order
    ("the Beatles.", ["Stones", "The Beatles"], 1.0),  # any gold
    ("anything at all", ["The"], 0.0),  # empty after normalisation: not everything matches
    ("a", ["The"], 1.0),  # ... only an empty prediction, where exact match is 1 too
])
def test_contains_cases(prediction, golds, expected) -> None:
    assert contains(prediction, golds) == expected


def test_contains_regex_searches_the_whole_prediction() -> None:
    assert contains("It was Gagarin", [r"Gagarin"], regex=True) == 1.0  # regex_match: 0.0
    assert contains("yuri gagarin", [r"x", r"(Yuri\s+)?Gagarin"], regex=True) == 1.0
    assert contains("It was Titov", [r"Gagarin"], regex=True) == 0.0
    assert contains("1987", [r"8"], regex=True) == 1.0  # a pattern says its own boundaries
    assert contains("1987", [r"\b8\b"], regex=True) == 0.0
    with pytest.raises(BadInputError, match="not a valid regular expression"):
        contains("x", ["(unclosed"], regex=True)
    with pytest.raises(BadInputError, match="at least one gold answer"):
        contains("x", [])


def test_answer_in_passages() -> None:
    passages = ["The Eiffel Tower is in Paris.", "It opened in 1889 for the fair."]
    assert answer_in_passages(["eiffel tower"], passages)
    assert answer_in_passages(["Berlin", "1889"], passages)  # any gold, any passage
    assert not answer_in_passages(["188"], passages)  # whole tokens only
    assert not answer_in_passages(["the"], passages)  # empty after normalisation: no match
    assert not answer_in_passages(["Paris"], [])
    assert answer_in_passages([r"18[0-9]{2}"], passages, regex=True)
    assert answer_in_passages([r"cafe"], ["Un cafe\u0301."], regex=True)  # NFD text
