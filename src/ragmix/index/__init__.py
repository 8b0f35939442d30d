"""Vector indexes: maximum inner product search over int64 chunk ids."""

from ragmix.index.base import VectorIndex
from ragmix.index.faiss_index import FaissIndex

# Every kind FaissIndex builds; the CLI and collection settings validate against this.
INDEX_KINDS = ("flat", "hnsw", "ivf", "ivfpq")

__all__ = ["INDEX_KINDS", "FaissIndex", "VectorIndex"]
