"""What a server is started with: its collections, data folder, generator, keys and limits."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ragmix.errors import BadInputError, CollectionError
from ragmix.modes import DEFAULT_GENERATOR
from ragmix.generation.base import Generator
from ragmix.rerank.base import Reranker
from ragmix.server.auth import KeyRing, RateLimit
from ragmix.store.home import is_url
from ragmix.store.manifest import MANIFEST_NAME


@dataclass(frozen=True)
class Limits:
    """Request size limits; k and query length are fixed in ``ragmix.server.schemas``."""

    # A whole request body, multipart uploads included (a few files of max_upload_bytes).
    max_body_bytes: int = 64_000_000
    # One uploaded file: the default of `ragmix index --max-bytes`.
    max_upload_bytes: int = 20_000_000
    # Files in one upload: each becomes a line of the job's result.
    max_files: int = 100

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_upload_bytes", "max_files"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BadInputError(f"{name} must be an integer > 0, got {value!r}")


@dataclass(frozen=True)
class ServerSettings:
    """Everything :func:`ragmix.server.app.create_app` needs, already checked.

    ``generator`` is called once, on the worker thread that then owns the
    generator, when the first question comes (so a server that only searches
    never loads a model). Build one with :meth:`build`.
    """

    # name in the URL -> collection directory, or postgresql://...?collection=NAME
    collections: Mapping[str, Path | str]
    data_dir: Path  # uploads and job records; nothing is written outside it
    generator: Callable[[], Generator]
    keys: KeyRing = field(default_factory=lambda: KeyRing({}))
    limits: Limits = Limits()
    rate_limit: RateLimit | None = None  # None: no limit
    heartbeat_s: float = 15.0  # SSE comment while an answer is awaited; proxies cut idle streams
    dtype: str = "auto"  # what the encoders compute in (ragmix.dtypes.DTYPES)
    # What requests with "rerank": true re-score with, loaded at the first such request;
    # None: this server does not rerank (ragmix serve --rerank NAME).
    reranker: Callable[[], Reranker] | None = None

    def __repr__(self) -> str:  # short, and shows how many keys, never a hash
        return (f"ServerSettings(collections={list(self.collections)}, "
                f"data_dir={str(self.data_dir)!r}, keys={self.keys!r})")

    @classmethod
    def build(cls, collections: Sequence[str | Path], *, data_dir: str | Path,
              generator: str | Callable[[], Generator] = DEFAULT_GENERATOR, keys: KeyRing | None = None,
              limits: Limits | None = None, rate_limit: RateLimit | None = None,
              heartbeat_s: float = 15.0, dtype: str = "auto",
              reranker: str | Callable[[], Reranker] | None = None,
              rerank_model: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
              rerank_weight: float = 1.0) -> ServerSettings:
        """Settings for serving ``collections`` (directories or PostgreSQL collection URLs),
        each under its folder's name or its ``collection=`` name.

        ``generator`` is a name or folder for :func:`ragmix.generation.load_generator`,
        or a function that returns a generator. ``reranker`` is a name of
        :data:`ragmix.modes.RERANKERS` or a chain of them
        (:func:`ragmix.rerank.chain.load_rerank_chain`: ``rerank_model`` one model, or one
        per reranker; ``rerank_weight`` for one reranker), or a function that returns one.
        """
        if isinstance(reranker, str):  # a name or chain: checked, and its token stores
            from ragmix.rerank.chain import build_chain, chain_stages, with_weight

            stages = chain_stages(with_weight(reranker, rerank_weight), rerank_model,
                                  dtype=dtype, store_root=data_dir)  # kept across restarts
            reranker = partial(build_chain, stages, dtype=dtype)  # loaded at the first request
        if isinstance(generator, str):
            from ragmix.generation import load_generator

            generator = partial(load_generator, generator, dtype=dtype)
        if not heartbeat_s > 0:
            raise BadInputError(f"heartbeat_s must be > 0, got {heartbeat_s!r}")
        return cls(collections=collection_names(collections), data_dir=Path(data_dir),
                   generator=generator, keys=keys if keys is not None else KeyRing({}),
                   limits=limits or Limits(), rate_limit=rate_limit, heartbeat_s=heartbeat_s,
                   dtype=dtype, reranker=reranker)


def collection_names(locations: Sequence[str | Path]) -> dict[str, Path | str]:
    """Each collection under the name the URLs use: a directory's folder name, a
    PostgreSQL collection's ``collection=`` name (its URL is kept as given).

    >>> import tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> for name in ("docs", "wiki"):
    ...     (tmp / name).mkdir(); _ = (tmp / name / MANIFEST_NAME).write_text("{}")
    >>> sorted(collection_names([tmp / "docs", tmp / "wiki"]))
    ['docs', 'wiki']
    """
    if not locations:
        raise BadInputError("serve needs at least one collection: --collection DIR (or "
                            "postgresql://USER@HOST:PORT/DB?collection=NAME)")
    named: dict[str, Path | str] = {}
    shown: dict[str, str] = {}  # name -> location for messages (no password)
    for given in locations:
        name, location, where = _located(given)
        if name in named:
            raise BadInputError(
                f"two collections are both named {name!r} ({shown[name]} and {where}); the URL "
                "names a collection by its folder name (or collection= name), so rename one")
        named[name], shown[name] = location, where
    return named


def _located(given: str | Path) -> tuple[str, Path | str, str]:
    """(URL name, location to open, location to show) of a served collection, checked."""
    if is_url(given):
        from ragmix.store.pg.home import PgHome

        home = PgHome.from_url(str(given))
        if not home.exists():
            raise CollectionError(
                f"{home.location!r} holds no collection {home.name!r}; create it with "
                f"ragmix index FILES --collection '{home.location}'")
        return home.name, str(given), home.location
    directory = Path(given).expanduser().resolve()
    if not (directory / MANIFEST_NAME).exists():
        raise CollectionError(
            f"{str(given)!r} is not a collection (no {MANIFEST_NAME}); create it with "
            f"ragmix index FILES --collection {given}")
    return directory.name, directory, str(directory)
