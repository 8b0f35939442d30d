"""Pseudo-queries for ``ragmix tune``: short windows of a collection's own passages.

Tuning an ANN index on stored passage vectors is optimistic: a passage is a node of
the graph it searches. Short windows of passage text, embedded with the query
encoder, land where real queries do, between the passages. Measured by
``bench/bench_tune.py`` (``bench/results/tune.json``) on SQuAD-open's 20,968 MiniLM
paragraphs (HNSW M=8, ef_construction=40, target recall@10 0.95, 1,000 dev
questions held out):

- stored passage vectors chose ef_search 12, which gave the questions 0.824;
- 2,000 windows of 6-12 words chose 129: the questions got 0.982;
- half the questions themselves chose 60: 0.958 on the other half.

So windows reach the target on real queries, a little conservatively; real queries
(``ragmix tune --queries FILE``) are still the best sample where a user has them.

>>> import numpy as np
>>> from ragmix.store.backend import ChunkRow
>>> class Two:
...     def chunk_ids(self, source=None): return np.array([3, 7])
...     def chunk_rows(self, ids):
...         text = " ".join(f"w{j}" for j in range(30))
...         return {i: ChunkRow(i, "d", text, 0, len(text), "", "d.txt") for i in ids}
>>> queries = window_queries(Two(), 4, seed=0)
>>> len(queries), all(6 <= len(q.split()) <= 12 for q in queries)
(4, True)
"""

from __future__ import annotations

import random

from ragmix.errors import BadInputError
from ragmix.store.backend import StoreBackend

WINDOW_WORDS = (6, 12)  # a short question's length, in words


def window_queries(backend: StoreBackend, n: int, *, seed: int = 0,
                   words: tuple[int, int] = WINDOW_WORDS) -> list[str]:
    """``n`` seeded windows of ``words[0]``..``words[1]`` consecutive words, each from a
    passage drawn at random (with replacement when the collection holds fewer than
    ``n``); a passage shorter than the window is taken whole. Empty passages are skipped."""
    low, high = words
    if not 1 <= low <= high:
        raise BadInputError(f"words must be 1 <= low <= high, got {words}")
    if n < 1:
        raise BadInputError(f"n must be >= 1, got {n}")
    ids = [int(i) for i in backend.chunk_ids()]
    if not ids:
        raise BadInputError("the collection holds no passages to draw queries from")
    rng = random.Random(seed)
    picked = rng.sample(ids, n) if n <= len(ids) else [rng.choice(ids) for _ in range(n)]
    rows = backend.chunk_rows(sorted(set(picked)))
    queries = []
    for chunk_id in picked:
        tokens = rows[chunk_id].text.split()
        if not tokens:
            continue
        size = rng.randint(low, high)
        start = rng.randrange(max(1, len(tokens) - size + 1))
        queries.append(" ".join(tokens[start:start + size]))
    if not queries:
        raise BadInputError("every sampled passage is empty; give --queries FILE")
    return queries
