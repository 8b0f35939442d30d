"""How sure a grounded answer is, and when to say "the collection does not say" instead.

A grounded answer carries ``signals``: numbers read off its decoding (the
answer's marginal, the model's own probability of the span, how much of the
prior p(z|x) proposed it, the posterior's peak, the lead over the next
answer, the retrieval scores). A :class:`Calibration` turns them into a
confidence in [0, 1], a logistic regression fitted on SQuAD *train*
questions, half of them asked of a collection their article was deleted
from (``bench/bench_abstention.py``); its ``threshold`` is the default
``min_confidence``, chosen on the same train questions.

Calibrations live in ``confidence.json`` beside this module (or the file
named by ``$RAGMIX_CALIBRATION``), one per (generator, mode, scoring):
numbers from another model mean something else, so an uncalibrated
generator gets no confidence and never abstains unless given a calibration.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ragmix.errors import BadInputError
from ragmix.types import Answer

# What an answer that abstains says; its best guess stays in ``Answer.guess``.
ABSTAIN_TEXT = "The collection does not say."
CALIBRATION_FILE = Path(__file__).with_name("confidence.json")
CALIBRATION_ENV = "RAGMIX_CALIBRATION"
SIGNALS = ("marginal", "best_raw", "constrained", "support", "posterior_max", "margin",
           "prior_max", "top_score", "tokens")
MAX_MARGIN = 10.0  # the lead of an answer with no rival


@dataclass(frozen=True)
class Calibration:
    """A logistic regression from an answer's signals to P(the answer is right)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float  # the default min_confidence
    fitted_on: str = ""

    def __post_init__(self) -> None:
        unknown = [f for f in self.features if f not in SIGNALS]
        if unknown:
            raise BadInputError(f"unknown confidence signal {unknown[0]!r}; known: {SIGNALS}")
        n = len(self.features)
        if not len(self.mean) == len(self.scale) == len(self.weights) == n:
            raise BadInputError(f"a calibration needs one mean, scale and weight per feature "
                                f"({n}), got {len(self.mean)}, {len(self.scale)}, "
                                f"{len(self.weights)}")

    def confidence(self, signals: Mapping[str, float]) -> float:
        """sigmoid(w . standardised signals + b)."""
        missing = [f for f in self.features if f not in signals]
        if missing:
            raise BadInputError(f"the answer has no {missing[0]!r} signal; grounded answers "
                                "carry them (decoding='grounded')")
        z = self.bias + sum(w * (float(signals[f]) - m) / s for f, m, s, w in zip(
            self.features, self.mean, self.scale, self.weights))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def calibration_key(generator: str, mode: str, scoring: str) -> str:
    return f"{generator}/{mode}/{scoring}"


def load_calibration(generator: str, mode: str, scoring: str,
                     path: str | Path | None = None) -> Calibration | None:
    """The calibration fitted for this generator, mode and scoring, or None."""
    path = Path(path or os.environ.get(CALIBRATION_ENV) or CALIBRATION_FILE)
    if not path.exists():
        return None
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        entry = table.get(calibration_key(generator, mode, scoring))
        return None if entry is None else Calibration(**{
            k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()})
    except (ValueError, TypeError) as err:
        raise BadInputError(f"{path} is not a ragmix confidence calibration ({err}); "
                            "refit it with bench/bench_abstention.py") from err


def save_calibration(calibration: Calibration, generator: str, mode: str, scoring: str,
                     path: str | Path | None = None) -> None:
    """Merge ``calibration`` into the calibration file under its key."""
    path = Path(path) if path is not None else CALIBRATION_FILE
    table = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    table[calibration_key(generator, mode, scoring)] = asdict(calibration)
    path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def answer_signals(*, marginal: float, per_row_raw: Sequence[float],
                   per_row_constrained: Sequence[float], prior: Sequence[float],
                   posterior: Sequence[float], runner_up: float | None, top_score: float,
                   tokens: int) -> dict[str, float]:
    """The signals of a grounded answer (rows where it was not proposed hold -inf)."""
    proposed = [z for z, v in enumerate(per_row_raw) if v > -math.inf]
    return {
        "marginal": float(marginal),
        "best_raw": max(per_row_raw[z] for z in proposed),
        "constrained": max(per_row_constrained[z] for z in proposed),
        "support": float(sum(prior[z] for z in proposed)),
        "posterior_max": float(max(posterior)),
        "margin": MAX_MARGIN if runner_up is None else min(MAX_MARGIN, marginal - runner_up),
        "prior_max": float(max(prior)),
        "top_score": float(top_score),
        "tokens": float(tokens),
    }


def resolve_threshold(min_confidence: float | str | None,
                      calibration: Calibration | None) -> float | None:
    """``"auto"``: the calibration's threshold (None without one); a number is checked."""
    if min_confidence is None:
        return None
    if min_confidence == "auto":
        return None if calibration is None else calibration.threshold
    if isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float)) \
            or not 0.0 <= float(min_confidence) <= 1.0:
        raise BadInputError(f"min_confidence must be 'auto' or a number in [0, 1], got "
                            f"{min_confidence!r}")
    if calibration is None and min_confidence > 0:
        raise BadInputError(
            f"min_confidence={min_confidence} needs a confidence calibration for this "
            "generator, mode and scoring, and there is none; fit one with "
            f"bench/bench_abstention.py and point ${CALIBRATION_ENV} at it, or pass 0")
    return float(min_confidence)


def with_confidence(answer: Answer, calibration: Calibration | None,
                    threshold: float | None) -> Answer:
    """``answer`` with its confidence; below ``threshold`` it abstains, keeping its guess."""
    if calibration is None or not answer.signals:
        return answer
    confidence = calibration.confidence(answer.signals)
    if threshold is None or confidence >= threshold:
        return replace(answer, confidence=confidence)
    return replace(answer, confidence=confidence, text=ABSTAIN_TEXT, guess=answer.text,
                   abstained=True, quotes=(), cited=())


def abstention_policy(generator: object, mode: str, scoring: str, *, grounded: bool,
                      min_confidence: float | str | None,
                      calibration: Calibration | None = None
                      ) -> tuple[Calibration | None, float | None]:
    """The calibration and threshold an answerer uses (both None for free decoding).

    ``calibration`` defaults to the shipped one for the generator's ``name``.
    """
    if not grounded:
        if min_confidence not in (None, "auto", 0, 0.0):
            raise BadInputError(f"min_confidence={min_confidence!r} needs grounded decoding "
                                "(confidence is read off the span decoder); use "
                                "decoding='grounded' / --decoding grounded")
        return None, None
    if calibration is None:
        calibration = load_calibration(str(getattr(generator, "name", "")), mode, scoring)
    return calibration, resolve_threshold(min_confidence, calibration)
