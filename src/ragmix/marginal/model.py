"""Question answering the paper's way: retrieve K passages, decode over their mixture.

``MarginalRAG.ask`` retrieves the top-k hits, turns their scores into the
prior p(z|x) = softmax(score / tau), builds one [passage + question] prompt
per hit, decodes with RAG-Sequence or RAG-Token, and returns an
:class:`~ragmix.types.Answer` with the prior, the posterior p(z|x,y) and, for
RAG-Token (or with ``explain=True``), the per-token posteriors.
"""

from __future__ import annotations

from collections.abc import Callable

from ragmix._extras import require
from ragmix.errors import BadInputError
from ragmix.generation.base import ScoringGenerator
from ragmix.generation.prompt import build_passage_prompt
from ragmix.generation.rag import Searcher
from ragmix.modes import SCORINGS
from ragmix.marginal.confidence import Calibration, abstention_policy, with_confidence
from ragmix.marginal.grounded_answer import grounded_answer
from ragmix.marginal.math import doc_logprobs
from ragmix.marginal.rag_sequence import rag_sequence_decode
from ragmix.marginal.rag_token import rag_token_decode
from ragmix.marginal.scoring import score_passages, with_end
from ragmix.modes import DECODINGS, DEFAULT_SCORING, GROUNDED_MODES
from ragmix.types import Answer

MARGINAL_MODES = ("rag-sequence", "rag-token")
# Default temperature of the prior p(z|x) = softmax(score / tau), per retrieval mode.
# dense: all-MiniLM-L6-v2 was trained with softmax(20 * cosine) over passages, so
#   tau = 1/20 gives the distribution the encoder was trained to produce (DPR and
#   the paper likewise use the encoder's raw inner products);
# bm25: the paper's BM25 ablation uses BM25 scores as logits (tau = 1);
# hybrid: fused scores lie in [0, 1] (min-max weighted) and need a sharp tau too.
DEFAULT_TAU = {"dense": 0.05, "bm25": 1.0, "hybrid": 0.1, "splade": 2.0, "hybrid-splade": 0.1}


class MarginalRAG:
    """RAG-Sequence or RAG-Token over a searcher and a scoring generator.

    The generator is any :class:`~ragmix.generation.base.ScoringGenerator`:
    token ids, teacher-forced scores and lockstep decoding, such as a local
    Hugging Face model (:class:`~ragmix.generation.hf.HFGenerator`).

    ``decoding="grounded"`` answers with a verbatim span of the passages
    (:mod:`ragmix.marginal.grounded_answer`), with a calibrated ``confidence``
    where ragmix has a calibration for the generator; below ``min_confidence``
    ("auto": the calibration's threshold, 0: never) the answer abstains
    (:mod:`ragmix.marginal.confidence`).

    With ``load_generator()`` (smollm2-squad) the answers make sense; the tiny random
    model here only shows what an answer carries:

    >>> import tempfile
    >>> from ragmix import Collection, Document
    >>> from ragmix.testing import tiny_random_generator
    >>> tmp = tempfile.TemporaryDirectory()
    >>> collection = Collection.create(tmp.name, encoder="hashing-256")
    >>> _ = collection.add_documents([
    ...     Document("varno", "Lake Varno is 310 metres deep.", "varno.md", title="Lake Varno"),
    ...     Document("kelm", "Kelm lies on the shore of Lake Varno.", "kelm.md", title="Kelm"),
    ... ])
    >>> rag = MarginalRAG(collection, tiny_random_generator(), mode="rag-token", k=2,
    ...                   max_new_tokens=4)
    >>> answer = rag.ask("How deep is Lake Varno?", explain=True)
    >>> [hit.title for hit in answer.hits], round(sum(answer.prior), 6)  # p(z|x)
    (['Lake Varno', 'Kelm'], 1.0)
    >>> round(sum(answer.posterior), 6)  # p(z|x,y): which passage the answer came from
    1.0
    >>> len(answer.token_posteriors) == len(answer.tokens) > 0  # p(z|x,y_<=i) per token
    True
    >>> collection.close()
    >>> tmp.cleanup()
    """

    def __init__(
        self, retriever: Searcher, generator: ScoringGenerator, *, mode: str = "rag-sequence",
        k: int = 5, retrieval: str = "hybrid", tau: float | None = None,
        beams: int | None = None,
        decoding: str = "thorough", max_new_tokens: int = 32, length_penalty: float = 0.0,
        scoring: str = DEFAULT_SCORING, min_confidence: float | str | None = "auto",
        calibration: Calibration | None = None,
    ) -> None:
        if mode not in MARGINAL_MODES:
            raise BadInputError(f"mode must be one of {MARGINAL_MODES}, got {mode!r}")
        if decoding not in DECODINGS:
            raise BadInputError(f"decoding must be one of {DECODINGS}, got {decoding!r}")
        if scoring not in SCORINGS:
            raise BadInputError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
        if decoding == "grounded" and mode not in GROUNDED_MODES:
            raise BadInputError(f"grounded decoding works with modes {GROUNDED_MODES}, not "
                                f"{mode!r}; use --decoding thorough or fast with {mode}")
        for name, value in (("k", k), ("max_new_tokens", max_new_tokens),
                            ("beams", 1 if beams is None else beams)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BadInputError(f"{name} must be an integer greater than 0, got {value!r}")
        tau = DEFAULT_TAU.get(retrieval, 1.0) if tau is None else tau
        if not tau > 0:
            raise BadInputError(f"tau must be > 0, got {tau!r}")
        if not isinstance(generator, ScoringGenerator):
            raise BadInputError(
                f"{mode} needs a local Hugging Face generator (HFGenerator) or another "
                "ScoringGenerator (token ids, score_ids, start_decoding; see "
                f"ragmix.generation.base), got {type(generator).__name__}")
        self.retriever, self.generator = retriever, generator
        self.mode, self.k, self.retrieval, self.tau = mode, k, retrieval, tau
        # the paper decodes RAG-Token greedily (or with beams) and RAG-Sequence with beams
        self.beams = beams if beams is not None else (1 if mode == "rag-token" else 4)
        self.decoding, self.max_new_tokens = decoding, max_new_tokens
        self.length_penalty, self.scoring = length_penalty, scoring
        self.calibration, self.min_confidence = abstention_policy(
            generator, mode, scoring, grounded=decoding == "grounded",
            min_confidence=min_confidence, calibration=calibration)

    def ask(self, question: str, *, explain: bool = False,
            on_token: Callable[[str], None] | None = None) -> Answer:
        """Answer ``question``; ``on_token`` receives the whole answer once decoded."""
        torch = require("torch", "models")
        if not isinstance(question, str) or not question.strip():
            raise BadInputError(f"question must be a non-empty string, got {question!r}")
        question = question.strip()
        hits = list(self.retriever.search(question, self.k, mode=self.retrieval))[: self.k]
        if not hits:
            return Answer(question, "", (), mode=self.mode)
        gen = self.generator
        scores = torch.tensor([h.score for h in hits], dtype=torch.float64)
        doc_lp = doc_logprobs(scores, self.tau)  # (K,)
        if self.decoding == "grounded":
            answer = grounded_answer(gen, question, hits, mode=self.mode, doc_lp=doc_lp,
                                     beams=self.beams, max_new_tokens=self.max_new_tokens,
                                     scoring=self.scoring)
            answer = with_confidence(answer, self.calibration, self.min_confidence)
            if on_token is not None and answer.text:
                on_token(answer.text)
            return answer
        prompts = [gen.encode_prompt(build_passage_prompt(question, h)) for h in hits]
        options = dict(max_new_tokens=self.max_new_tokens, beams=self.beams,
                       length_penalty=self.length_penalty)
        if self.mode == "rag-token":
            out = rag_token_decode(gen, prompts, doc_lp, **options)
            tokens, logprob, finished = out.best.tokens, out.best.logprob, out.best.finished
            joint = out.joint  # (T, K)
            per_passage = (joint - doc_lp[None]).sum(0) if len(tokens) else doc_lp * 0
        else:
            out = rag_sequence_decode(gen, prompts, doc_lp, decoding=self.decoding, **options)
            tokens, logprob, finished = out.best.tokens, out.best.logprob, out.best.finished
            per_passage, joint = out.per_passage, None  # (K,)
        if explain and joint is None and tokens:
            joint = self._forced_joint(prompts, tokens, finished, doc_lp)
        posterior = (doc_lp + per_passage).softmax(-1)  # p(z | x, y)
        text = gen.decode(tokens).strip()
        if on_token is not None and text:
            on_token(text)
        per_token = () if joint is None else tuple(
            tuple(row) for row in joint.softmax(-1).tolist())
        return Answer(
            question=question, text=text, hits=tuple(hits), mode=self.mode,
            logprob=float(logprob), prior=tuple(doc_lp.exp().tolist()),
            posterior=tuple(posterior.tolist()),
            tokens=tuple(gen.decode([t]) for t in tokens) if per_token else (),
            token_posteriors=per_token, decoding=self.decoding,
        )

    def _forced_joint(self, prompts, tokens, finished, doc_lp):
        """RAG-Sequence's running joint log p(z|x) + log p(y_<=i | x, z): (T, K).

        Its softmax over K is p(z | x, y_<=i), the posterior after i answer
        tokens (one teacher-forced pass over the K passages).
        """
        torch = require("torch", "models")
        answer = with_end(self.generator, tokens) if finished else list(tokens)
        with torch.inference_mode():
            scores = score_passages(self.generator, [prompts], [answer])
        token_lp = scores.token_lp[0, :, : len(tokens)].double()  # (K, T)
        return (doc_lp[:, None] + token_lp.cumsum(-1)).T  # (T, K)
