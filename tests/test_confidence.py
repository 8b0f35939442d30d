"""Confidence and abstention: the calibration's arithmetic, its file, and the threshold's rule."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragmix.errors import BadInputError
from ragmix.marginal.confidence import (
    ABSTAIN_TEXT,
    SIGNALS,
    Calibration,
    abstention_policy,
    answer_signals,
    load_calibration,
    resolve_threshold,
    save_calibration,
    with_confidence,
)
from ragmix.types import Answer, Hit, Quote

HIT = Hit(chunk_id=0, doc_id="d", text="Lake Varno is 310 metres deep.", score=0.9, prob=1.0,
          rank=1)


def calibration(bias: float = 0.0, threshold: float = 0.5, weight: float = 1.0) -> Calibration:
    n = len(SIGNALS)
    return Calibration(SIGNALS, (0.0,) * n, (1.0,) * n,
                       (weight,) + (0.0,) * (n - 1), bias, threshold)


def signals(marginal: float = -1.0) -> dict[str, float]:
    return answer_signals(marginal=marginal, per_row_raw=[-2.0, -math.inf],
                          per_row_constrained=[-0.5, -math.inf], prior=[0.7, 0.3],
                          posterior=[0.9, 0.1], runner_up=None, top_score=0.9, tokens=3)


def answer(marginal: float = -1.0) -> Answer:
    return Answer("How deep?", "310 metres", (HIT,), cited=(1,), mode="rag-sequence",
                  decoding="grounded", quotes=(Quote(1, 13, 23),), signals=signals(marginal))


def test_signals_are_read_from_the_rows_that_proposed_the_answer() -> None:
    s = signals()
    assert set(s) == set(SIGNALS)
    assert s["best_raw"] == -2.0 and s["constrained"] == -0.5
    assert s["support"] == pytest.approx(0.7) and s["prior_max"] == 0.7
    assert s["margin"] == 10.0 and s["tokens"] == 3.0


def test_confidence_is_the_logistic_of_the_standardised_signals() -> None:
    n = len(SIGNALS)
    cal = Calibration(SIGNALS, (-1.0,) + (0.0,) * (n - 1), (2.0,) + (1.0,) * (n - 1),
                      (3.0,) + (0.0,) * (n - 1), -0.5, 0.5)
    z = -0.5 + 3.0 * (signals(-2.0)["marginal"] + 1.0) / 2.0
    assert cal.confidence(signals(-2.0)) == pytest.approx(1 / (1 + math.exp(-z)))
    assert cal.confidence({**signals(), "marginal": 1e9}) == pytest.approx(1.0)


def test_a_calibration_refuses_unknown_signals_and_ragged_numbers() -> None:
    with pytest.raises(BadInputError, match="unknown confidence signal 'vibes'"):
        Calibration(("vibes",), (0.0,), (1.0,), (1.0,), 0.0, 0.5)
    with pytest.raises(BadInputError, match="one mean, scale and weight per feature"):
        Calibration(("marginal",), (0.0, 1.0), (1.0,), (1.0,), 0.0, 0.5)
    with pytest.raises(BadInputError, match="no 'best_raw' signal"):
        calibration().confidence({"marginal": 0.0})


def test_calibrations_round_trip_through_their_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "confidence.json"
    cal = calibration(bias=0.25, threshold=0.3)
    save_calibration(cal, "smollm2", "rag-sequence", "pmi", path)
    save_calibration(calibration(), "smollm2", "stuff", "pmi", path)
    assert load_calibration("smollm2", "rag-sequence", "pmi", path) == cal
    assert load_calibration("other", "rag-sequence", "pmi", path) is None
    monkeypatch.setenv("RAGMIX_CALIBRATION", str(path))
    assert load_calibration("smollm2", "rag-sequence", "pmi") == cal
    path.write_text(json.dumps({"smollm2/stuff/pmi": {"features": 3}}))
    with pytest.raises(BadInputError, match="not a ragmix confidence calibration"):
        load_calibration("smollm2", "stuff", "pmi")


def test_the_threshold_rule() -> None:
    cal = calibration(threshold=0.3)
    assert resolve_threshold("auto", cal) == 0.3
    assert resolve_threshold("auto", None) is None
    assert resolve_threshold(0.6, cal) == 0.6 and resolve_threshold(0, None) == 0.0
    with pytest.raises(BadInputError, match=r"a number in \[0, 1\], got 1.5"):
        resolve_threshold(1.5, cal)
    with pytest.raises(BadInputError, match="needs a confidence calibration"):
        resolve_threshold(0.5, None)
    with pytest.raises(BadInputError, match="needs grounded decoding"):
        abstention_policy(object(), "stuff", "pmi", grounded=False, min_confidence=0.5)
    assert abstention_policy(object(), "stuff", "pmi", grounded=False,
                             min_confidence="auto") == (None, None)


@given(st.floats(-8, 8), st.floats(0, 1))
def test_an_answer_abstains_exactly_below_the_threshold(marginal, threshold) -> None:
    cal = calibration()
    out = with_confidence(answer(marginal), cal, threshold)
    confidence = cal.confidence(signals(marginal))
    assert out.confidence == confidence
    assert out.abstained == (confidence < threshold)
    if out.abstained:
        assert out.text == ABSTAIN_TEXT and out.guess == "310 metres"
        assert out.quotes == () and out.cited == () and out.hits == (HIT,)
    else:
        assert out.text == "310 metres" and out.quotes and not out.guess


def test_no_calibration_or_no_threshold_never_abstains() -> None:
    assert with_confidence(answer(), None, 0.9) == answer()
    kept = with_confidence(answer(-50.0), calibration(), None)
    assert not kept.abstained and kept.confidence is not None and kept.confidence < 0.01
    free = Answer("q", "text", (HIT,))
    assert with_confidence(free, calibration(), 0.9) == free  # no signals: nothing to read


@pytest.mark.parametrize("bias, abstains", [(-40.0, True), (40.0, False)])
def test_marginal_rag_abstains_by_its_calibration(bias, abstains) -> None:
    pytest.importorskip("transformers")
    from ragmix.marginal.model import MarginalRAG
    from ragmix.testing import tiny_random_generator

    class Searcher:
        def search(self, query, k, *, mode):
            return [HIT, Hit(chunk_id=1, doc_id="e", text="Kelm lies on its shore.",
                             score=0.5, prob=0.0, rank=2)][:k]

    rag = MarginalRAG(Searcher(), tiny_random_generator(byte_level=True, seed=1), k=2,
                      decoding="grounded", beams=2, max_new_tokens=6,
                      calibration=calibration(bias=bias, weight=0.0), min_confidence="auto")
    out = rag.ask("How deep is Lake Varno?")
    assert set(out.signals) == set(SIGNALS)
    assert all(math.isfinite(v) for v in out.signals.values())
    assert out.abstained == abstains and len(out.hits) == 2
    if abstains:
        assert out.text == ABSTAIN_TEXT and out.guess and out.guess in " ".join(
            h.text for h in out.hits)
