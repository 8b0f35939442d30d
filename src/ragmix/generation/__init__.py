"""Answer questions from retrieved passages.

Importing this package does not import torch: models load inside the functions
that need them. A searcher is anything with ``search(query, k, *, mode)``, such
as a :class:`~ragmix.store.Collection`; ``load_generator()`` gives the packaged
SmolLM2-135M-Instruct, for which :class:`~ragmix.testing.ScriptedGenerator`
stands in here.

>>> from ragmix.generation import RAG
>>> from ragmix.testing import ScriptedGenerator
>>> from ragmix.types import Hit
>>> class OnePassage:
...     def search(self, query, k, *, mode):
...         return [Hit(0, "modes.md", "ragmix searches dense, bm25 or hybrid.", 1.0, 1.0, 1)]
>>> generator = ScriptedGenerator("Dense, BM25 and hybrid [1].")
>>> answer = RAG(OnePassage(), generator, k=4).ask("Which retrieval modes does ragmix offer?")
>>> answer.text, answer.cited
('Dense, BM25 and hybrid [1].', (1,))
>>> print(generator.prompts[0])  # doctest: +ELLIPSIS
Read the numbered passages and answer the question below in a few words, ...
<BLANKLINE>
[1] ragmix searches dense, bm25 or hybrid.
<BLANKLINE>
Question: Which retrieval modes does ragmix offer?
"""

from __future__ import annotations

from pathlib import Path

from ragmix.errors import BadInputError
from ragmix.generation.base import Decoder, Generator, ScoringGenerator, TrainableGenerator
from ragmix.generation.hf import HFGenerator
from ragmix.generation.prompt import build_prompt, parse_citations
from ragmix.generation.rag import RAG, Searcher
from ragmix.generation.smollm import load_smollm2

__all__ = [
    "Decoder",
    "Generator",
    "HFGenerator",
    "RAG",
    "ScoringGenerator",
    "Searcher",
    "TrainableGenerator",
    "build_prompt",
    "load_generator",
    "load_smollm2",
    "parse_citations",
]

from ragmix.modes import DEFAULT_GENERATOR  # noqa: E402

# The packaged generators, by the name users type (--generator NAME); lazily, since the
# reader needs peft.
def _load_reader(**options):
    from ragmix.generation.reader import load_smollm2_squad

    return load_smollm2_squad(**options)


PACKAGED = {"smollm2": load_smollm2, "smollm2-squad": _load_reader}


def load_generator(spec: str = DEFAULT_GENERATOR, *, dtype: str = "float32") -> Generator:
    """A generator by packaged name or by local model folder.

    Packaged: "smollm2-squad" (the default: SmolLM2 with ragmix's reader
    adapter, see :mod:`ragmix.generation.reader`) and "smollm2" (the model as
    packaged).

    A folder is any directory written by ``save_pretrained`` (causal LM or
    seq2seq); nothing is ever downloaded. ``dtype`` is the weights' type, one
    of :data:`ragmix.dtypes.DTYPES` ("auto": bfloat16 where the CPU has AMX).
    """
    from ragmix.dtypes import check_dtype

    check_dtype(dtype)
    if spec in PACKAGED:
        return PACKAGED[spec](dtype=dtype)
    folder = Path(spec).expanduser()
    if folder.is_dir():
        return HFGenerator.from_pretrained(folder, dtype=dtype)
    choices = ", ".join(repr(name) for name in PACKAGED)
    raise BadInputError(
        f"unknown generator {spec!r}: give one of {choices} or the path of a local "
        "model folder (written by save_pretrained; models are never downloaded)"
    )
