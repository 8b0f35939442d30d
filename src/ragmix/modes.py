"""The names the CLI, the Python API and reports share: generation modes and decodings.

One place, so a choice offered by ``ragmix ask`` is the one the library accepts.
"""

from __future__ import annotations

from ragmix.errors import BadInputError

# The generator `ragmix ask`, `eval qa`, `serve` and load_generator() use unless told:
# SmolLM2-135M-Instruct with ragmix's reader adapter, trained on SQuAD train questions
# (ragmix.generation.reader); "smollm2" is the model as packaged, what training starts from.
DEFAULT_GENERATOR = "smollm2-squad"

# How the generator uses the passages: all in one prompt ("stuff"), or the paper's
# two marginals over them (Lewis et al., 2020).
GENERATION_MODES = ("stuff", "rag-sequence", "rag-token")

# How an answer is decoded.
# - thorough / fast: RAG-Sequence's free decoding; thorough scores every beam answer
#   under every passage, fast only where it was proposed (the paper's 2.5);
# - grounded: only a verbatim span of the passages, then the end (stuff and rag-sequence).
# "stuff" without grounded decoding generates freely and cites [n].
DECODINGS = ("thorough", "fast", "grounded")
FREE_DECODINGS = ("thorough", "fast")
GROUNDED_MODES = ("stuff", "rag-sequence")
# How grounded decoding ranks spans (see ragmix.marginal.grounded). With the default
# reader (smollm2-squad), "constrained" measured best on SQuAD train questions and tied
# "pmi" on ragmix's docs QA set at 0.6x its time; "pmi" suits a frozen model better
# (BENCHMARKS.md, "Grounded answers").
SCORINGS = ("constrained", "raw", "mean", "pmi")
DEFAULT_SCORING = "constrained"

# What `ragmix ask --decoding` offers: "free" is stuff's and RAG-Token's free generation
# (RAG-Sequence's is thorough or fast). Its defaults are what measured best.
ASK_DECODINGS = ("grounded", "free", *FREE_DECODINGS)
ASK_DEFAULT_MODE = "rag-sequence"


def ask_decoding(mode: str, decoding: str | None) -> str:
    """The decoding `ragmix ask` uses: grounded by default where it exists, else free.

    >>> ask_decoding("rag-sequence", None), ask_decoding("rag-token", None)
    ('grounded', 'free')
    >>> ask_decoding("rag-sequence", "free")
    'thorough'
    """
    if decoding is None:
        return "grounded" if mode in GROUNDED_MODES else "free"
    if decoding == "free" and mode == "rag-sequence":
        return "thorough"
    return decoding

# The `--decoding` values (`ask`'s vocabulary) each generation mode has: `eval qa` runs a
# decoding with the modes in this table, as `ask` accepts them (free: RAG-Sequence's thorough).
MODE_DECODINGS = {"stuff": ("grounded", "free"),
                  "rag-sequence": ("grounded", "free", *FREE_DECODINGS),
                  "rag-token": ("free",)}

# `eval qa`'s results and journals, and the benches, name a generation mode and its
# decoding in one word: MODE[-DECODING], e.g. "rag-sequence-fast", "stuff-grounded"
# ("rag-sequence" alone is thorough, "stuff" and "rag-token" alone generate freely).
QA_MODES = ("stuff", "stuff-grounded", "rag-sequence", "rag-sequence-fast",
            "rag-sequence-grounded", "rag-token")


def qa_mode_name(mode: str, decoding: str | None = None) -> str:
    """The one-word ``eval qa`` name of a generation mode and an ``ask`` decoding.

    ``decoding`` None is ``ask``'s default (:func:`ask_decoding`); "free" names no
    decoding. :func:`split_qa_mode` reads the name back, free decoding as "thorough",
    which is what the library calls it.

    >>> qa_mode_name("rag-sequence", "fast"), qa_mode_name("stuff", "free")
    ('rag-sequence-fast', 'stuff')
    >>> qa_mode_name("rag-sequence"), qa_mode_name("rag-token")
    ('rag-sequence-grounded', 'rag-token')
    >>> split_qa_mode(qa_mode_name("rag-sequence", "free"))
    ('rag-sequence', 'thorough')
    """
    if mode not in MODE_DECODINGS:
        raise BadInputError(f"mode must be one of {GENERATION_MODES}, got {mode!r}")
    if decoding is not None and decoding not in MODE_DECODINGS[mode]:
        raise BadInputError(f"mode {mode} decodes {' or '.join(MODE_DECODINGS[mode])}, not "
                         f"{decoding!r}")
    decoding = ask_decoding(mode, decoding)
    return mode if decoding in ("free", "thorough") else f"{mode}-{decoding}"


def split_qa_mode(name: str) -> tuple[str, str]:
    """(generation mode, decoding) of an ``eval qa`` mode name.

    >>> split_qa_mode("rag-sequence-fast"), split_qa_mode("stuff")
    (('rag-sequence', 'fast'), ('stuff', 'thorough'))
    """
    for decoding in DECODINGS:
        if name.endswith("-" + decoding):
            return name.removesuffix("-" + decoding), decoding
    return name, "thorough"

# Second-stage rerankers (ragmix.rerank): they re-score the first stage's top
# --rerank-depth hits.
# - cross-encoder: a MiniLM reading query and passage together (ragmix train reranker,
#   or any local sentence-transformers CrossEncoder folder);
# - late-interaction: ColBERT-style MaxSim over MiniLM token vectors (Khattab & Zaharia, 2020);
# - query-likelihood: log p(question | passage) under the generator (UPR, Sachan et al., 2022).
RERANKERS = ("cross-encoder", "late-interaction", "query-likelihood")
DEFAULT_RERANK_DEPTH = 50
