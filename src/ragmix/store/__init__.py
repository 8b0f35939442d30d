"""Collections and their storage: the StoreBackend seam and the embedded backend
(a directory with SQLite + FAISS + BM25)."""

from ragmix.store.backend import PassageIndex, StoreBackend
from ragmix.store.collection import MODES, Collection
from ragmix.store.embedded import EmbeddedBackend
from ragmix.store.ingest import IndexReport, Progress

__all__ = ["MODES", "Collection", "EmbeddedBackend", "IndexReport", "PassageIndex", "Progress",
           "StoreBackend"]
