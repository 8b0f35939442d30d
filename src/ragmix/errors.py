"""Typed errors: each names the bad value and, where there is one, the fix."""

from __future__ import annotations


class RagmixError(Exception):
    """Base class for every error ragmix raises on purpose."""


class BadInputError(RagmixError, ValueError):
    """An argument or file that ragmix cannot use, e.g. ``k must be > 0, got 0``."""


class MissingExtraError(RagmixError, ImportError):
    """An optional dependency is not installed; the message names the pip command."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module!r} is not installed; install it with: pip install 'ragmix[{extra}]'"
        )
        self.module = module
        self.extra = extra


class CollectionError(RagmixError):
    """A collection directory is missing, corrupt, or was built with other settings."""


class EncoderMismatchError(CollectionError):
    """A collection is opened with an encoder other than the one that built it."""
