"""A cross-encoder relevance model: query and passage read together by one transformer.

A bi-encoder embeds query and passage apart; a cross-encoder (Nogueira & Cho,
2019, "Passage Re-ranking with BERT") reads ``[CLS] query [SEP] passage
[SEP]`` and a classification head turns the pair into one logit. Sharper,
and too slow for a whole corpus, so it re-scores the first stage's top hits.

:class:`CrossEncoderScorer` loads any local Hugging Face sequence-classification
folder: one written by ``ragmix train reranker``, or a sentence-transformers
``CrossEncoder`` folder (the same files, plus a few JSON configs ignored here).

    scorer = CrossEncoderScorer("models/scifact-reranker")
    scorer.score("how deep is lake varno?", ["Lake Varno is 310 m deep.", "Paris..."])
    # array([ 6.1, -4.3])  (raw logits: higher is more relevant)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragmix._extras import require
from ragmix.dtypes import resolve_dtype, torch_dtype
from ragmix.errors import BadInputError

TRAINING_REPORT = "ragmix_reranker.json"  # written beside the weights by ragmix train reranker


def pair_scores(logits: Any) -> Any:
    """One relevance score per pair from a classification head's logits: (n, L) -> (n,).

    One label (how rerankers are trained): the raw logit. Two labels
    (irrelevant, relevant), as monoBERT-style models have: the log-odds
    ``logit[1] - logit[0]``, which ranks as the relevant class's probability.
    """
    if logits.shape[-1] == 1:
        return logits[:, 0]  # (n,)
    return logits[:, 1] - logits[:, 0]  # (n,)


def pair_encoding(tokenizer: Any, queries: Sequence[str], passages: Sequence[str],
                  max_length: int) -> Any:
    """Tokenised (query, passage) pairs, padded, as tensors; passages are cut to fit.

    Queries are kept whole (``truncation="only_second"``) unless one is longer
    than half of ``max_length``: then both sides are cut (``longest_first``),
    which for short queries gives the same tokens, but never fails.
    """
    longest = max((len(ids) for ids in tokenizer(list(queries), add_special_tokens=False)
                   ["input_ids"]), default=0)
    strategy = "only_second" if longest <= (max_length - 3) // 2 else "longest_first"
    return tokenizer(list(queries), list(passages), truncation=strategy, max_length=max_length,
                     padding=True, return_tensors="pt")


def load_sequence_classifier(path: str | Path, *, num_labels: int | None = None,
                             ) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local folder, checked to be a sequence classifier.

    With ``num_labels`` (training a new head) any encoder folder will do, a
    sentence-transformers bi-encoder such as all-MiniLM-L6-v2 included.
    Raises :class:`BadInputError` naming the folder when it cannot be used.
    """
    transformers = require("transformers", "models")
    from ragmix.generation.hf import quiet_progress_bars

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise BadInputError(f"cross-encoder folder {str(folder)!r} does not exist; train one "
                            "with `ragmix train reranker --out DIR`, or give a local "
                            "sentence-transformers CrossEncoder folder")
    if not (folder / "config.json").is_file():
        raise BadInputError(f"{str(folder)!r} has no config.json: not a Hugging Face model "
                            "folder (a CrossEncoder folder holds config.json, the weights "
                            "and the tokenizer)")
    config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    if num_labels is None:
        architectures = list(getattr(config, "architectures", None) or [])
        if not any(a.endswith("ForSequenceClassification") for a in architectures):
            raise BadInputError(
                f"{str(folder)!r} holds a {', '.join(architectures) or config.model_type} "
                "model, not a sequence-classification (cross-encoder) model; train one from "
                f"it with `ragmix train reranker --base {folder}`")
        if config.num_labels not in (1, 2):
            raise BadInputError(f"{str(folder)!r} has {config.num_labels} labels; a reranker "
                                "needs 1 (a relevance logit) or 2 (irrelevant, relevant)")
    # a new head: weights of another head shape (a 2-label classifier) are dropped, not an error
    extra = {} if num_labels is None else {"num_labels": num_labels,
                                           "ignore_mismatched_sizes": True}
    with quiet_progress_bars():
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(folder), local_files_only=True, **extra)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return model, tokenizer


class CrossEncoderScorer:
    """A :class:`~ragmix.rerank.PassageScorer` over a local cross-encoder folder.

    ``dtype`` (:data:`ragmix.dtypes.DTYPES`): "auto" is bf16 where the CPU has
    AMX, else float32. Under bf16 the scorer holds bf16 weights (it only infers;
    training autocasts instead): 486 ms against 568 ms under autocast for 50
    SciFact pairs of 256 tokens on 2 AMX cores, logits correlated 0.99998 with
    float32's (``bench/bench_rerank.py ce-latency``). Passages go in
    batches of ``batch_size``, longest first, so a batch pads little; each
    pair is cut to ``max_length`` tokens (the passage side).

    >>> scorer = CrossEncoderScorer("models/scifact-reranker")  # doctest: +SKIP
    >>> scorer.score("what is rag?", ["RAG retrieves, then", "Bread"]).shape  # doctest: +SKIP
    (2,)
    """

    def __init__(self, path: str | Path, *, dtype: str = "auto", batch_size: int = 32,
                 max_length: int = 256) -> None:
        for option, value, low in (("batch_size", batch_size, 1), ("max_length", max_length, 8)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise BadInputError(f"{option} must be an integer >= {low}, got {value!r}")
        self.dtype = resolve_dtype(dtype)
        self.batch_size, self.max_length = batch_size, max_length
        self.path = Path(path).expanduser()
        self.model, self.tokenizer = load_sequence_classifier(self.path)
        self.model.eval()
        if self.dtype == "bfloat16":  # weights cast once, not per matmul as autocast does
            self.model.to(torch_dtype(self.dtype))
        self._name = f"cross-encoder:{self.path.resolve().name}"

    @property
    def name(self) -> str:
        return self._name

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """Relevance logits of ``texts`` for ``query``, shape (len(texts),), float64."""
        torch = require("torch", "models")
        texts = list(texts)
        out = np.zeros(len(texts), dtype=np.float64)  # (n,)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # pad little
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = pair_encoding(self.tokenizer, [query] * len(rows),
                                      [texts[i] for i in rows], self.max_length)
                batch = {key: value.to(self.model.device) for key, value in batch.items()}
                logits = self.model(**batch).logits  # (b, num_labels)
                out[rows] = pair_scores(logits.float()).cpu().numpy()  # (b,)
        return out
