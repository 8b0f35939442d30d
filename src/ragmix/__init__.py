r"""ragmix: Retrieval-Augmented Generation (Lewis et al., 2020), offline-first.

Index a folder, search it, answer from it. This example runs anywhere: the
hashing encoder and a scripted generator stand in for the packaged models, which
the defaults load instead (``Collection.create("my-col")`` embeds with
all-MiniLM-L6-v2; ``load_generator()`` answers with SmolLM2-135M-Instruct).

>>> import tempfile
>>> from pathlib import Path
>>> from ragmix import RAG, Collection
>>> from ragmix.testing import ScriptedGenerator
>>> tmp = tempfile.TemporaryDirectory()
>>> notes = Path(tmp.name, "notes")
>>> notes.mkdir()
>>> _ = (notes / "varno.md").write_text("# Lake Varno\n\nLake Varno is 310 metres deep.")
>>> _ = (notes / "kelm.md").write_text("# Kelm\n\nKelm is a fishing town founded in 1672.")
>>> col = Collection.create(Path(tmp.name, "my-col"), encoder="hashing-256")
>>> col.add([notes]).added
2
>>> [hit.title for hit in col.search("how deep is lake varno?", k=2)]
['Lake Varno', 'Kelm']
>>> answer = RAG(col, ScriptedGenerator("It is 310 metres deep [1].")).ask(
...     "How deep is Lake Varno?")
>>> answer.text, [hit.title for hit in answer.sources]
('It is 310 metres deep [1].', ['Lake Varno'])
>>> col.close()
>>> tmp.cleanup()
"""

from ragmix.errors import (
    BadInputError,
    CollectionError,
    EncoderMismatchError,
    MissingExtraError,
    RagmixError,
)
from ragmix.types import Answer, Chunk, Document, Hit, ScoredId, Skipped

__version__ = "0.1.0"


def __getattr__(name: str):
    # The collection and generation layers pull in numpy-heavy modules; load on demand.
    if name == "Collection":
        from ragmix.store import Collection

        return Collection
    if name in ("RAG", "load_generator"):
        from ragmix import generation

        return getattr(generation, name)
    if name == "load_encoder":
        from ragmix.encoders import load_encoder

        return load_encoder
    raise AttributeError(f"module 'ragmix' has no attribute {name!r}")


__all__ = [
    "RAG",
    "Answer",
    "BadInputError",
    "Chunk",
    "Collection",
    "CollectionError",
    "Document",
    "EncoderMismatchError",
    "Hit",
    "MissingExtraError",
    "RagmixError",
    "ScoredId",
    "Skipped",
    "load_encoder",
    "load_generator",
]
