"""Which floating-point type models compute in: float32, or bfloat16 on CPUs where it pays.

``dtype`` arguments across ragmix take one of :data:`DTYPES`. ``"auto"``
means bfloat16 when this CPU has AMX tiles for it (``amx_bf16``, with torch's
oneDNN backend), else float32; ``$RAGMIX_DTYPE`` ("float32" or "bfloat16")
overrides that decision. The library's own default is
``"float32"``, so numbers never depend on the machine unless asked; the CLI
defaults to ``auto``.

What bf16 does where (details in docs/indexing.md, "Numeric precision"):
encoders run their forward pass under ``torch.autocast`` and still return
float32 unit vectors; generators hold bf16 weights (log-softmax stays in
float32); training autocasts its forward passes and keeps float32 master
weights and optimiser state.

>>> resolve_dtype("float32")
'float32'
>>> resolve_dtype("float16")
Traceback (most recent call last):
...
ragmix.errors.BadInputError: dtype must be one of ('auto', 'float32', 'bfloat16'), got 'float16'
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from ragmix._extras import require
from ragmix.errors import BadInputError

DTYPES = ("auto", "float32", "bfloat16")
ENV_VAR = "RAGMIX_DTYPE"
CPUINFO = Path("/proc/cpuinfo")
# CPU flags (as Linux names them) under which bf16 pays. AMX runs oneDNN's bf16
# matmuls several times faster than float32 (MiniLM embedding 2.7x, SmolLM2 scoring
# 3.8x). AVX512-BF16 alone does not: on a Xeon VM showing avx512_bf16 but no amx_*
# flags, torch 2.13's bf16 matmuls ran at ~80 GFLOP/s against ~150 for float32
# (embedding 0.66x, scoring 0.66x), so "auto" keeps float32 there.
BF16_FLAGS = frozenset({"amx_bf16"})


def cpu_flags(path: Path = CPUINFO) -> frozenset[str]:
    """The feature flags of the first CPU in ``/proc/cpuinfo``; empty if it can't be read."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux, or no /proc: nothing is known, so nothing is assumed
        return frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def cpu_supports_bf16() -> bool:
    """True when this CPU runs bf16 matmuls faster than float32 (AMX) and oneDNN can use it."""
    if not BF16_FLAGS & cpu_flags():
        return False
    torch = require("torch", "models")
    return bool(torch.backends.mkldnn.is_available())


def resolve_dtype(dtype: str = "float32") -> str:
    """``dtype`` as "float32" or "bfloat16": ``auto`` is ``$RAGMIX_DTYPE``, else the CPU's best.

    Raises :class:`~ragmix.errors.BadInputError` for anything outside :data:`DTYPES`.
    """
    check_dtype(dtype)
    if dtype != "auto":
        return dtype
    override = os.environ.get(ENV_VAR, "").strip()
    if override and override != "auto":
        if override not in DTYPES:
            raise BadInputError(f"${ENV_VAR} must be one of {DTYPES}, got {override!r}")
        return override
    return "bfloat16" if cpu_supports_bf16() else "float32"


def check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise BadInputError(f"dtype must be one of {DTYPES}, got {dtype!r}")


def torch_dtype(dtype: str) -> Any:
    """The ``torch.dtype`` that ``dtype`` resolves to (see :func:`resolve_dtype`)."""
    torch = require("torch", "models")
    return torch.bfloat16 if resolve_dtype(dtype) == "bfloat16" else torch.float32


def autocast(dtype: str) -> AbstractContextManager[Any]:
    """A context that runs CPU matmuls in bf16 when ``dtype`` resolves to bfloat16, else nothing.

    Weights stay as they are (float32 master weights when training); the ops
    autocast keeps in float32 (norms, softmax, losses) stay there.
    """
    if resolve_dtype(dtype) != "bfloat16":
        return nullcontext()
    torch = require("torch", "models")
    return torch.autocast("cpu", dtype=torch.bfloat16)
