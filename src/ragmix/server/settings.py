"""What a server is started with: its collections, data folder, generator, keys and limits."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ragmix.errors import BadInputError, CollectionError
from ragmix.modes import DEFAULT_GENERATOR
from ragmix.generation.base import Generator
from ragmix.server.auth import KeyRing, RateLimit
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

    collections: Mapping[str, Path]  # name in the URL -> collection directory
    data_dir: Path  # uploads and job records; nothing is written outside it
    generator: Callable[[], Generator]
    keys: KeyRing = field(default_factory=lambda: KeyRing({}))
    limits: Limits = Limits()
    rate_limit: RateLimit | None = None  # None: no limit
    heartbeat_s: float = 15.0  # SSE comment while an answer is awaited; proxies cut idle streams
    dtype: str = "auto"  # what the encoders compute in (ragmix.dtypes.DTYPES)

    def __repr__(self) -> str:  # short, and shows how many keys, never a hash
        return (f"ServerSettings(collections={list(self.collections)}, "
                f"data_dir={str(self.data_dir)!r}, keys={self.keys!r})")

    @classmethod
    def build(cls, collection_dirs: Sequence[str | Path], *, data_dir: str | Path,
              generator: str | Callable[[], Generator] = DEFAULT_GENERATOR, keys: KeyRing | None = None,
              limits: Limits | None = None, rate_limit: RateLimit | None = None,
              heartbeat_s: float = 15.0, dtype: str = "auto") -> ServerSettings:
        """Settings for serving ``collection_dirs``, each under its folder's name.

        ``generator`` is a name or folder for :func:`ragmix.generation.load_generator`,
        or a function that returns a generator.
        """
        if isinstance(generator, str):
            from ragmix.generation import load_generator

            generator = partial(load_generator, generator, dtype=dtype)
        if not heartbeat_s > 0:
            raise BadInputError(f"heartbeat_s must be > 0, got {heartbeat_s!r}")
        return cls(collections=collection_names(collection_dirs), data_dir=Path(data_dir),
                   generator=generator, keys=keys if keys is not None else KeyRing({}),
                   limits=limits or Limits(), rate_limit=rate_limit, heartbeat_s=heartbeat_s,
                   dtype=dtype)


def collection_names(dirs: Sequence[str | Path]) -> dict[str, Path]:
    """Each collection directory under its folder name, which the URLs use.

    >>> import tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> for name in ("docs", "wiki"):
    ...     (tmp / name).mkdir(); _ = (tmp / name / MANIFEST_NAME).write_text("{}")
    >>> sorted(collection_names([tmp / "docs", tmp / "wiki"]))
    ['docs', 'wiki']
    """
    if not dirs:
        raise BadInputError("serve needs at least one collection: --collection DIR")
    named: dict[str, Path] = {}
    for given in dirs:
        directory = Path(given).expanduser().resolve()
        if not (directory / MANIFEST_NAME).exists():
            raise CollectionError(
                f"{str(given)!r} is not a collection (no {MANIFEST_NAME}); create it with "
                f"ragmix index FILES --collection {given}")
        if directory.name in named:
            raise BadInputError(
                f"two collections are both named {directory.name!r} ({named[directory.name]} "
                f"and {directory}); the URL names a collection by its folder name, so rename one")
        named[directory.name] = directory
    return named
