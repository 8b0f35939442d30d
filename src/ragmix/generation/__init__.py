"""Answer questions from retrieved passages.

Importing this package does not import torch: models load inside the functions
that need them.

>>> from ragmix.generation import RAG, load_generator
>>> rag = RAG(collection, load_generator("smollm2"), k=4)  # doctest: +SKIP
>>> rag.ask("Which retrieval modes does ragmix offer?").text  # doctest: +SKIP
'Dense, sparse and hybrid [1].'
"""

from __future__ import annotations

from pathlib import Path

from ragmix.errors import BadInputError
from ragmix.generation.base import Generator
from ragmix.generation.hf import HFGenerator
from ragmix.generation.prompt import build_prompt, parse_citations
from ragmix.generation.rag import RAG, Searcher
from ragmix.generation.smollm import load_smollm2

__all__ = [
    "Generator",
    "HFGenerator",
    "RAG",
    "Searcher",
    "build_prompt",
    "load_generator",
    "load_smollm2",
    "parse_citations",
]

# The packaged generators, by the name users type (--generator NAME).
PACKAGED = {"smollm2": load_smollm2}


def load_generator(spec: str = "smollm2") -> Generator:
    """A generator by packaged name ("smollm2") or by local model folder.

    A folder is any directory written by ``save_pretrained`` (causal LM or
    seq2seq); nothing is ever downloaded.
    """
    if spec in PACKAGED:
        return PACKAGED[spec]()
    folder = Path(spec).expanduser()
    if folder.is_dir():
        return HFGenerator.from_pretrained(folder)
    choices = ", ".join(repr(name) for name in PACKAGED)
    raise BadInputError(
        f"unknown generator {spec!r}: give one of {choices} or the path of a local "
        "model folder (written by save_pretrained; models are never downloaded)"
    )
