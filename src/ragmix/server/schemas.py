"""The request and response bodies of the API, their choices taken from ragmix's registries."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragmix.chunking import CHUNKERS
from ragmix.index import INDEX_KINDS
from ragmix.modes import (
    ASK_DECODINGS,
    ASK_DEFAULT_MODE,
    DEFAULT_RERANK_DEPTH,
    DEFAULT_SCORING,
    GENERATION_MODES,
    SCORINGS,
)
from ragmix.retrieval.retrievers import DEFAULT_FUSION, FUSIONS, MODES
from ragmix.server.catalog import CollectionSpec, check_collection_name, check_encoder_spec

# Bounds on the work one request may ask for. k: passages retrieved (and, for
# rag-*, decoded against: cost grows with k); a query longer than this is a
# document, not a question; beams and tokens bound one answer's decoding time.
MAX_K = 100
MAX_QUERY_CHARS = 2_000
MAX_BEAMS = 16
MAX_NEW_TOKENS = 512
MAX_RERANK_DEPTH = 200  # a reranker's cost grows with the hits it re-scores

RetrievalMode = Literal[MODES]
Fusion = Literal[FUSIONS]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not ignored


class SearchRequest(_Strict):
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS,
                       examples=["how are documents chunked?"])
    k: int = Field(5, ge=1, le=MAX_K, description="Number of passages.")
    retrieval: RetrievalMode = Field("hybrid", description="Retrieval mode.")
    fusion: Fusion = Field(DEFAULT_FUSION, description="How hybrid retrieval fuses dense and "
                           "BM25 scores: min-max weighted (0.5 each) or Reciprocal Rank Fusion.")
    source: str | None = Field(None, max_length=1_000, description="Only passages whose "
                               "document path or id matches this glob.")
    rerank: bool = Field(False, description="Re-score the first stage's top rerank_depth "
                         "hits with the server's reranker (ragmix serve --rerank NAME).")
    rerank_depth: int = Field(DEFAULT_RERANK_DEPTH, ge=1, le=MAX_RERANK_DEPTH,
                              description="How many first-stage hits the reranker re-scores.")


class AskOptions(_Strict):
    """How to answer: the options of ``ragmix ask``, shared by ask and chat completions."""

    mode: Literal[GENERATION_MODES] = Field(
        ASK_DEFAULT_MODE, description="stuff: the top-k passages in one prompt; rag-sequence / "
        "rag-token: the paper's marginals over the passages, sources by posterior.")
    decoding: Literal[ASK_DECODINGS] | None = Field(
        None, description="grounded: a verbatim span of the passages (stuff, rag-sequence); "
        "free: generate freely (for rag-sequence: thorough); thorough / fast: RAG-Sequence's "
        "free decodings [default: grounded where it exists, else free].")
    retrieval: RetrievalMode = "hybrid"
    k: int = Field(5, ge=1, le=MAX_K)
    source: str | None = Field(None, max_length=1_000)
    fusion: Fusion = DEFAULT_FUSION
    rerank: bool = Field(False, description="Rerank the passages with the server's reranker "
                         "(ragmix serve --rerank NAME) before answering.")
    rerank_depth: int = Field(DEFAULT_RERANK_DEPTH, ge=1, le=MAX_RERANK_DEPTH)
    tau: float | None = Field(None, gt=0, le=1_000, description="Temperature of the prior "
                              "p(z|x) = softmax(score / tau) (rag-* modes).")
    beams: int | None = Field(None, ge=1, le=MAX_BEAMS)
    scoring: Literal[SCORINGS] = Field(DEFAULT_SCORING, description="How grounded decoding "
                                       "ranks spans.")
    min_confidence: float | Literal["auto"] | None = Field(
        "auto", description="Grounded answers below this calibrated confidence abstain; "
        "auto: the calibration's threshold; 0 or null: always answer.")
    max_new_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS,
                                       description="[default: 200 for stuff, 32 for rag-*]")
    explain: bool = Field(False, description="Per-token passage posteriors (rag-* free "
                          "decoding).")

    @field_validator("min_confidence")
    @classmethod
    def _in_unit_interval(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, float) and not 0.0 <= value <= 1.0:
            raise ValueError(f"min_confidence must be 'auto' or a number in [0, 1], got {value}")
        return value

    def answerer_options(self) -> dict[str, Any]:
        """The options of :func:`ragmix.server.answering.answerer`."""
        return self.model_dump(include={"mode", "decoding", "retrieval", "k", "tau", "beams",
                                        "scoring", "min_confidence", "max_new_tokens",
                                        "explain"})


class AskRequest(AskOptions):
    question: str = Field(min_length=1, max_length=MAX_QUERY_CHARS,
                          examples=["what does make demo do?"])
    stream: bool = Field(False, description="Answer as Server-Sent Events (as does "
                         "Accept: text/event-stream).")


class CreateCollectionRequest(_Strict):
    """A new, empty collection: its name and the settings of ``ragmix index``."""

    name: str = Field(min_length=1, max_length=64, examples=["team-docs"],
                      description="1 to 64 letters, digits, '.', '_' or '-', starting with a "
                      "letter or digit; the collection's name in URLs.")
    encoder: str = Field("minilm", max_length=40, examples=["hashing-256"],
                         description="minilm, minilm-int8 (ONNX) or hashing-DIM.")
    chunker: Literal[tuple(CHUNKERS)] = Field("words", description="words: the paper's "
                                              "disjoint 100-word passages.")
    chunk_size: int | None = Field(None, ge=1, le=1_000_000, description="Words (words), "
                                   "characters (chars) or max characters (recursive).")
    overlap: int | None = Field(None, ge=0, le=1_000_000, description="words, chars.")
    index: Literal[INDEX_KINDS] = Field("flat", description="FAISS index type.")
    index_options: dict[str, int] = Field(
        default_factory=dict, max_length=8, description="FAISS knobs: M, ef_construction, "
        "ef_search (hnsw); nlist, nprobe (ivf, ivfpq); m, nbits (ivfpq).")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:  # no separators, no traversal: one folder name
        return check_collection_name(value)

    @field_validator("encoder")
    @classmethod
    def _named_encoder(cls, value: str) -> str:
        return check_encoder_spec(value)

    def spec(self) -> CollectionSpec:
        return CollectionSpec(**self.model_dump())


class Problem(BaseModel):
    """RFC 9457 problem details, as every error is answered."""

    type: str = Field(examples=["urn:ragmix:problem:unknown_collection"])
    title: str = Field(examples=["Not Found"])
    status: int = Field(examples=[404])
    detail: str
    code: str = Field(description="Stable; clients may switch on it.")
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(None, description="validation_error: each "
                                                "bad field (loc, msg, type).")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` saying these statuses are answered with a :class:`Problem`."""
    return {status: {"model": Problem, "content": {"application/problem+json": {}},
                     "description": "Problem details (RFC 9457)"} for status in statuses}
