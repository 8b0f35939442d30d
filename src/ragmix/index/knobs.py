"""The knobs of each FAISS index kind: defaults, validation and automatic choices."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ragmix.errors import BadInputError

# Defaults per kind (the kinds are ragmix.index.INDEX_KINDS); every knob is a
# keyword of FaissIndex(kind, dim, **params).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "flat": {},
    # M=32 and efConstruction=200 are the usual quality settings for text embeddings;
    # efSearch=128 keeps recall@10 close to 1 at a fraction of a flat scan's cost.
    "hnsw": {"M": 32, "ef_construction": 200, "ef_search": 128},
    # nlist=None: about 4*sqrt(n) lists, chosen when the first add trains the index.
    "ivf": {"nlist": None, "nprobe": 16},
    # m=None: the largest divisor of dim that is <= dim // 8 (8 dimensions per code byte).
    "ivfpq": {"nlist": None, "m": None, "nbits": 8, "nprobe": 16},
}

_MIN_POINTS_PER_CENTROID = 39  # below this, faiss's k-means warns that training is weak


def positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        bound = "> 0" if minimum == 1 else f">= {minimum}"
        raise BadInputError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def default_m(dim: int) -> int:
    """The default number of PQ sub-quantizers: the largest divisor of ``dim`` <= dim // 8.

    >>> default_m(64), default_m(384), default_m(100), default_m(7)
    (8, 48, 10, 1)
    """
    target = max(1, dim // 8)
    return max(d for d in range(1, target + 1) if dim % d == 0)


def auto_nlist(n: int) -> int:
    """The inverted-list count for ``n`` training vectors: ~4*sqrt(n), >= 39 points per list.

    >>> auto_nlist(5000), auto_nlist(100), auto_nlist(1)
    (128, 2, 1)
    """
    return max(1, min(round(4 * math.sqrt(n)), n // _MIN_POINTS_PER_CENTROID))


def index_defaults(kind: str) -> dict[str, Any]:
    """The default parameters of an index kind (a copy); the PostgreSQL backend's HNSW
    takes the same.

    >>> index_defaults("hnsw")
    {'M': 32, 'ef_construction': 200, 'ef_search': 128}
    """
    return dict(_DEFAULTS[kind])


def check_params(kind: str, dim: int, params: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - set(_DEFAULTS[kind]))
    if unknown:
        takes = ", ".join(_DEFAULTS[kind]) or "no parameters"
        raise BadInputError(
            f"unknown parameter {unknown[0]!r} for kind {kind!r}; it takes: {takes}"
        )
    out = {**_DEFAULTS[kind], **params}
    for name in ("ef_construction", "ef_search", "nprobe"):
        if name in out:
            out[name] = positive_int(name, out[name])
    if "M" in out:
        out["M"] = positive_int("M", out["M"], minimum=2)  # the level scale is 1/log(M)
    if out.get("nlist") is not None:
        out["nlist"] = positive_int("nlist", out["nlist"])
    if kind == "ivfpq":
        out["m"] = default_m(dim) if out["m"] is None else positive_int("m", out["m"])
        if dim % out["m"]:
            raise BadInputError(f"m must divide dim {dim}, got m={out['m']}")
        out["nbits"] = positive_int("nbits", out["nbits"])
        if out["nbits"] > 16:
            raise BadInputError(f"nbits must be <= 16, got {out['nbits']}")
    return out
