"""How a PostgreSQL collection indexes and searches: the ``index`` part of its manifest.

The knob names are the embedded backend's (``M``, ``ef_construction``, ``ef_search``
for HNSW; ``nlist``, ``nprobe`` for IVF), so ``--index-option`` means the same on both.

>>> settings = PgSettings.from_index({"kind": "hnsw", "M": 32, "ef_search": 80})
>>> settings.index_options()
HnswOptions(m=32, ef_construction=200)
>>> settings.as_index()["storage"]
'vector'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ragmix.errors import BadInputError
from ragmix.index.knobs import index_defaults
from ragmix.store.pg.index import HnswOptions, IndexOptions, IvfflatOptions
from ragmix.store.pg.schema import STORAGES
from ragmix.store.pg.search import DEFAULT_EF_SEARCH, MAX_EF_SEARCH

_HNSW = index_defaults("hnsw")
PG_INDEX_KINDS = ("hnsw", "ivf", "flat")  # flat: no ANN index, every search exact
KEYWORDS = ("bm25", "tsvector")
_KNOBS = {"hnsw": ("M", "ef_construction", "ef_search"), "ivf": ("nlist", "nprobe"), "flat": ()}
# The knob each kind reads at search time (ragmix tune sets it): None for exact search.
SEARCH_KNOBS: dict[str, str | None] = {"hnsw": "ef_search", "ivf": "nprobe", "flat": None}


@dataclass(frozen=True)
class PgSettings:
    """The embedding index, its storage and the keyword search of a PostgreSQL collection.

    ``kind``: ``hnsw`` (default), ``ivf`` (pgvector's IVFFlat) or ``flat`` (exact).
    ``storage``: ``vector`` (float32 index) or ``halfvec`` (a float16 index, half the
    size; the float32 embeddings stay in the table and re-score its shortlist).
    ``keyword``: ``bm25`` (bm25s over the chunk texts, a derived view stamped with the
    database's generation) or ``tsvector`` (PostgreSQL full text search, ``ts_rank_cd``:
    no IDF, so not BM25, but nothing to rebuild).
    """

    kind: str = "hnsw"
    storage: str = "vector"
    keyword: str = "bm25"
    # The graph is the embedded backend's (M=32, ef_construction=200), not pgvector's
    # (16, 64), whose graph reached recall@10 0.758 at ef_search 256 on 1M structured
    # MiniLM vectors where this one reached 0.952 at 64 (BENCHMARKS.md, issue 16). The
    # search knob stays pgvector's 40: on small tables a higher one makes the planner pick
    # an exact scan (8 ms on SciFact's 5k rows at 128, against 0.9 ms through the index);
    # `ragmix tune` raises it where the collection needs it.
    M: int = _HNSW["M"]
    ef_construction: int = _HNSW["ef_construction"]
    ef_search: int = DEFAULT_EF_SEARCH
    nlist: int = 100
    nprobe: int = 10

    def __post_init__(self) -> None:
        for name, allowed in (("kind", PG_INDEX_KINDS), ("storage", STORAGES),
                              ("keyword", KEYWORDS)):
            if getattr(self, name) not in allowed:
                raise BadInputError(f"PostgreSQL {name} must be one of {allowed}, "
                                    f"got {getattr(self, name)!r}")
        if not 1 <= self.ef_search <= MAX_EF_SEARCH:
            raise BadInputError(f"ef_search must be in 1..{MAX_EF_SEARCH}, got {self.ef_search}")
        if not 1 <= self.nprobe <= self.nlist:
            raise BadInputError(f"nprobe must be in 1..nlist ({self.nlist}), got {self.nprobe}")
        self.index_options()  # validates M, ef_construction, nlist

    @classmethod
    def from_index(cls, index: dict[str, Any]) -> PgSettings:
        """Settings from a manifest's ``index`` dict; unknown knobs are named in the error."""
        given = dict(index)
        kind = given.get("kind", "hnsw")
        known = {"kind", "storage", "keyword", *_KNOBS.get(kind, ())}
        unknown = sorted(set(given) - known)
        if unknown:
            raise BadInputError(
                f"unknown option(s) {unknown} for a PostgreSQL {kind!r} index; it takes "
                f"{sorted(known - {'kind'})}")
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in given.items() if key in names})

    def searching_with(self, *, ef_search: int | None = None,
                       nprobe: int | None = None) -> PgSettings:
        """These settings with ``ef_search`` (hnsw) / ``nprobe`` (ivf) replaced where given."""
        given = {"ef_search": ef_search, "nprobe": nprobe}
        knobs = {name: value for name, value in given.items() if value is not None}
        takes = SEARCH_KNOBS[self.kind]
        wrong = sorted(name for name in knobs if name != takes)
        if wrong:
            raise BadInputError(f"{wrong[0]} does not apply to a PostgreSQL {self.kind!r} index; "
                                f"it takes {takes or 'no search knob (it is exact)'}")
        return replace(self, **knobs) if knobs else self

    def as_index(self) -> dict[str, Any]:
        """The manifest's ``index`` dict: kind, storage, keyword and this kind's knobs."""
        values = asdict(self)
        return {key: values[key] for key in ("kind", "storage", "keyword", *_KNOBS[self.kind])}

    def index_options(self) -> IndexOptions | None:
        """What :func:`~ragmix.store.pg.build_index` builds, or None for ``flat``."""
        if self.kind == "hnsw":
            return HnswOptions(m=self.M, ef_construction=self.ef_construction)
        if self.kind == "ivf":
            return IvfflatOptions(lists=self.nlist)
        return None
