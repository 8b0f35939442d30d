"""Scale-out on Ray: embedding on a pool of actors, and dense search over FAISS shards.

Needs the ``ray`` extra (``pip install 'ragmix[ray]'``); ``import ragmix.distributed``
works without it, and the first call that needs Ray says what to install.
See docs/scale-out.md for when to reach for it.
"""

from ragmix.distributed.cluster import connect, shutdown
from ragmix.distributed.ingest import ingest_documents_with_ray, ingest_with_ray
from ragmix.distributed.searcher import ShardedSearcher, sharded_retriever
from ragmix.distributed.shards import (
    ShardSet,
    merge_topk,
    shard_backend,
    shard_topk,
    write_shards,
)

__all__ = ["ShardSet", "ShardedSearcher", "connect", "ingest_documents_with_ray",
           "ingest_with_ray", "merge_topk", "shard_backend", "shard_topk", "sharded_retriever",
           "shutdown", "write_shards"]
