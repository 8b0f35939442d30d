"""API keys with scopes, held only as SHA-256 hashes, and a per-key token-bucket rate limit.

A keys file (or ``$RAGMIX_API_KEYS``) has one key per line, optionally followed
by its scopes; a key without scopes has all of them::

    # ops: everything
    0c3f9a...long-random-key
    5d1e77...another-key read
    9aa0c2...and-another read,write

>>> ring = KeyRing.parse("k" * 20 + " read\\n" + "a" * 20, origin="example")
>>> ring.scopes_of("k" * 20), sorted(ring.scopes_of("a" * 20))
(frozenset({'read'}), ['admin', 'read', 'write'])
>>> ring.scopes_of("nope") is None, "k" * 20 in repr(ring)
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ragmix.errors import BadInputError

# read: list, get, search, ask, chat completions; write: upload and delete documents;
# admin: create and delete collections.
SCOPES = ("read", "write", "admin")
ENV_VAR = "RAGMIX_API_KEYS"
# Shorter keys can be guessed; the fix is printed with the error.
MIN_KEY_CHARS = 16
_MAKE_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
ANONYMOUS = "anonymous"  # the principal of every request when no keys are configured


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who made a request: a key's hash prefix (never the key) and its scopes."""

    id: str
    scopes: frozenset[str]


class KeyRing:
    """The configured API keys as SHA-256 hashes with their scopes; empty means open."""

    def __init__(self, hashed: Mapping[str, frozenset[str]]) -> None:
        self._hashed = dict(hashed)

    @classmethod
    def parse(cls, text: str, *, origin: str) -> KeyRing:
        """Keys from lines of ``KEY [scope,scope]``; ``#`` starts a comment line.

        ``origin`` names the file or variable in errors (which never quote a key).
        """
        hashed: dict[str, frozenset[str]] = {}
        for lineno, line in enumerate(text.replace(";", "\n").splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, _, scope_text = line.partition(" ")
            if len(key) < MIN_KEY_CHARS:
                raise BadInputError(
                    f"{origin}, entry {lineno}: an API key must have at least {MIN_KEY_CHARS} "
                    f"characters, this one has {len(key)}; make one with: {_MAKE_KEY}")
            scopes = frozenset(s.strip() for s in scope_text.split(",") if s.strip())
            unknown = sorted(scopes - set(SCOPES))
            if unknown:
                raise BadInputError(
                    f"{origin}, entry {lineno}: unknown scope(s) {', '.join(unknown)}; "
                    f"scopes are {', '.join(SCOPES)} (none given: all of them)")
            hashed[_digest(key)] = scopes or frozenset(SCOPES)
        return cls(hashed)

    @classmethod
    def load(cls, path: str | Path | None = None, *,
             environ: Mapping[str, str] = os.environ) -> KeyRing:
        """The keys in ``path`` and in ``$RAGMIX_API_KEYS`` (entries split by newlines or ``;``)."""
        ring = cls({})
        if path is not None:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise BadInputError(f"cannot read the API keys file {str(path)!r}: "
                                    f"{exc.strerror or exc}") from exc
            ring = ring.merged(cls.parse(text, origin=str(path)))
        if environ.get(ENV_VAR, "").strip():
            ring = ring.merged(cls.parse(environ[ENV_VAR], origin=f"${ENV_VAR}"))
        return ring

    def merged(self, other: KeyRing) -> KeyRing:
        return KeyRing({**self._hashed, **other._hashed})

    def __bool__(self) -> bool:
        return bool(self._hashed)

    def __len__(self) -> int:
        return len(self._hashed)

    def __repr__(self) -> str:
        return f"KeyRing({len(self._hashed)} key(s))"

    def scopes_of(self, key: str) -> frozenset[str] | None:
        """The scopes of ``key``, or None if it is not a configured key."""
        principal = self.authenticate(key)
        return None if principal is None else principal.scopes

    def authenticate(self, key: str) -> Principal | None:
        """The principal holding ``key``; every stored hash is compared in constant time."""
        presented = _digest(key)
        found = None
        for stored, scopes in self._hashed.items():
            if hmac.compare_digest(stored, presented):
                found = Principal(id=f"key:{stored[:12]}", scopes=scopes)
        return found


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only accepts connections from this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1")
    (True, True, True)
    >>> is_loopback("0.0.0.0"), is_loopback("example.org")
    (False, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve anywhere
        return False


def check_bind(host: str, keys: KeyRing) -> None:
    """Refuse to serve an open API (no keys) on an address other machines can reach."""
    if not keys and not is_loopback(host):
        raise BadInputError(
            f"refusing to serve on {host!r} without API keys: anyone who can reach it could "
            f"read and change the collections; give --api-keys FILE (or ${ENV_VAR}), or bind "
            "a loopback address such as --host 127.0.0.1")


@dataclass(frozen=True)
class RateLimit:
    """``per_second`` requests per key on average, in bursts of up to ``burst``."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not self.per_second > 0:
            raise BadInputError(f"rate limit must be > 0 requests per second, got "
                                f"{self.per_second!r}; leave it out for no limit")
        if self.burst < 1:
            raise BadInputError(f"rate-limit burst must be >= 1, got {self.burst!r}")


class RateLimiter:
    """One token bucket per principal (Turner, 1986): a request takes one token.

    >>> limiter = RateLimiter(RateLimit(per_second=1.0, burst=2), clock=lambda: 0.0)
    >>> [limiter.acquire("k") for _ in range(3)]  # the third waits a second for a token
    [0.0, 0.0, 1.0]
    """

    def __init__(self, limit: RateLimit, *, clock=time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, at)
        self._lock = threading.Lock()

    def acquire(self, principal_id: str) -> float:
        """0.0 if a token was taken, else the seconds until one will be there."""
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(principal_id, (float(self.limit.burst), now))
            tokens = min(float(self.limit.burst), tokens + (now - at) * self.limit.per_second)
            if tokens >= 1.0:
                self._buckets[principal_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[principal_id] = (tokens, now)
            return (1.0 - tokens) / self.limit.per_second


def retry_after_header(wait_s: float) -> str:
    """``Retry-After`` in whole seconds, rounded up (RFC 9110 allows no fraction).

    >>> retry_after_header(0.2), retry_after_header(2.0)
    ('1', '2')
    """
    return str(max(1, math.ceil(wait_s)))
