"""Encoders turn text into vectors; ``load_encoder`` builds one from its name."""

from __future__ import annotations

from pathlib import Path

from ragmix.encoders.base import Encoder
from ragmix.encoders.hashing import HashingEncoder
from ragmix.errors import BadInputError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_MINILM_ALIASES = ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
_INT8_ALIASES = ("minilm-int8", "all-MiniLM-L6-v2-int8")


def canonical_name(spec: str) -> str:
    """The name a loaded encoder reports for ``spec``, without loading a model.

    >>> canonical_name("minilm"), canonical_name("hashing")
    ('all-MiniLM-L6-v2', 'hashing-256')
    """
    if spec in _MINILM_ALIASES:
        return DEFAULT_ENCODER
    if spec in _INT8_ALIASES:
        return "all-MiniLM-L6-v2-int8"
    if spec == "hashing":
        return "hashing-256"
    if Path(spec).is_dir():
        return str(Path(spec).resolve())
    return spec


def load_encoder(spec: str = DEFAULT_ENCODER, *, dtype: str = "float32") -> Encoder:
    """Build an encoder from a spec: ``minilm`` (default), ``minilm-int8`` (ONNX),
    ``hashing-DIM``, a local sentence-transformers folder, or a two-tower folder
    written by ``ragmix train retriever --two-tower``.

    ``dtype`` (:data:`ragmix.dtypes.DTYPES`) applies to the sentence-transformers
    encoders; the int8 ONNX and hashing encoders have no float weights to change.

    >>> load_encoder("hashing-32").dim
    32
    """
    from ragmix.dtypes import check_dtype

    check_dtype(dtype)
    if spec in _MINILM_ALIASES:
        from ragmix.encoders.sentence_transformer import SentenceTransformerEncoder

        return SentenceTransformerEncoder(dtype=dtype)
    if spec in _INT8_ALIASES:
        from ragmix.encoders.onnx_minilm import OnnxMiniLMEncoder

        return OnnxMiniLMEncoder()
    if spec == "hashing" or spec.startswith("hashing-"):
        dim_text = spec.partition("-")[2] or "256"
        if not dim_text.isdigit():
            raise BadInputError(f"hashing encoder spec must be 'hashing-DIM', got {spec!r}")
        return HashingEncoder(int(dim_text))
    if Path(spec).is_dir():
        from ragmix.encoders.two_tower import TwoTowerEncoder, is_two_tower

        if is_two_tower(spec):
            return TwoTowerEncoder(spec, dtype=dtype)
        from ragmix.encoders.sentence_transformer import SentenceTransformerEncoder

        return SentenceTransformerEncoder(spec, dtype=dtype)
    raise BadInputError(
        f"unknown encoder {spec!r}; use 'minilm', 'minilm-int8', 'hashing-DIM' or a local "
        "sentence-transformers folder"
    )


__all__ = ["DEFAULT_ENCODER", "Encoder", "HashingEncoder", "canonical_name", "load_encoder"]
