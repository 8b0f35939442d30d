"""The embedded store: a collection directory (SQLite + FAISS + BM25)."""

from ragmix.store.collection import MODES, Collection
from ragmix.store.ingest import IndexReport, Progress

__all__ = ["MODES", "Collection", "IndexReport", "Progress"]
