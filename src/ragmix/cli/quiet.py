"""What the CLI lets through to stderr from Python's logging and warnings.

The library never configures logging; the CLI decides for the length of one
command. ragmix's own warnings are shown (a view rebuilt from the store, say);
other libraries' log records below ERROR and their Python warnings are not,
since what they report (pypdf's "invalid pdf header" on a broken file)
already reaches the user as the file's skip reason or as ragmix's error.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

_OURS = r"ragmix(\.|$)"


def _ours_or_error(record: logging.LogRecord) -> bool:
    """Keep ragmix's records (WARNING and up, by the handler's level) and anyone's errors."""
    ours = record.name == "ragmix" or record.name.startswith("ragmix.")
    return ours or record.levelno >= logging.ERROR


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at each record (click's test runner swaps it)."""

    def __init__(self) -> None:
        # StreamHandler.__init__ would pin today's stream; logging.lastResort does the same.
        logging.Handler.__init__(self, logging.WARNING)
        self.addFilter(_ours_or_error)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr


@contextmanager
def quiet_third_party() -> Iterator[None]:
    """Inside, ragmix's warnings reach stderr; other libraries' only from ERROR up.

    It replaces ``logging.lastResort``, the handler Python uses when nobody has
    configured logging, so a program that has set up its own handlers keeps them.
    """
    previous = logging.lastResort
    logging.lastResort = _StderrHandler()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore")
            warnings.filterwarnings("default", module=_OURS)  # inserted first, so it wins
            yield
    finally:
        logging.lastResort = previous
