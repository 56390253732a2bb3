"""A result cache: identical requests (same prompt, tenant and profile) reuse an earlier Output."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final, Protocol, runtime_checkable

import msgspec

from stream_service.messages import Request
from stream_service.observability.metrics import Metrics
from stream_service.processors.base import Output

_KEY_DIGEST_BYTES: Final = 32
_KEY_PERSON: Final = b"stream-svc-rc-v1"  # BLAKE2 personalisation: bump to invalidate every old key
_LENGTH_PREFIX_BYTES: Final = 8
_pack = msgspec.msgpack.Encoder().encode


def cache_key(request: Request) -> bytes:
    """BLAKE2b-256 of the length-prefixed prompt, tenant and profile name.

    Length prefixes make the encoding injective: ("ab", "c") and ("a", "bc") differ. The hash
    is strong so that a key collision, which would serve one tenant's answer to another, is
    not a practical concern (unlike MD5, whose collisions can be constructed).
    """
    try:
        # Fast path (one C call each): MessagePack strings are length-prefixed, so the encoding of
        # the tuple is injective too.
        packed = _pack((request.prompt, request.tenant, request.profile_name))
    except (msgspec.EncodeError, UnicodeEncodeError):  # lone surrogates: take the lenient way
        pass
    else:
        return hashlib.blake2b(packed, digest_size=_KEY_DIGEST_BYTES, person=_KEY_PERSON).digest()
    digest = hashlib.blake2b(digest_size=_KEY_DIGEST_BYTES, person=_KEY_PERSON)
    for field in (request.prompt, request.tenant, request.profile_name):
        encoded = field.encode("utf-8", "surrogatepass")
        digest.update(len(encoded).to_bytes(_LENGTH_PREFIX_BYTES, "big"))
        digest.update(encoded)
    return digest.digest()


@runtime_checkable
class CacheBackend(Protocol):
    """Where cached outputs live. ``ResultCache`` is the in-process one; a shared backend
    (Redis, memcached) implements the same calls, answering ``None`` rather than raising when
    it cannot be reached, so a cache outage only costs hits.
    """

    def key(self, request: Request) -> bytes: ...

    def get(self, key: bytes) -> Output | None: ...

    def put(self, key: bytes, output: Output) -> None: ...

    @property
    def hit_rate(self) -> float: ...


class ResultCache:
    """In-process LRU cache with a time-to-live, bounded by entry count.

    Guarantees: never more than ``max_entries`` entries (the least recently used goes first);
    an entry is never returned once ``ttl_s`` has passed since it was put, measured on the
    injected ``clock``; ``get`` refreshes recency but not age. Not thread-safe: use it from the
    event loop only. Rejects ``max_entries < 1`` and ``ttl_s <= 0`` with ``ValueError``.
    """

    def __init__(
        self,
        max_entries: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, Output]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self._metrics = metrics if metrics is not None else Metrics(enabled=False)
        self._metrics.cache_entries.set_function(self.__len__)  # read at scrape time

    key = staticmethod(cache_key)

    def get(self, key: bytes) -> Output | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        expires_at, output = entry
        if self._clock() >= expires_at:
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return output

    def put(self, key: bytes, output: Output) -> None:
        entries = self._entries
        entries[key] = (self._clock() + self.ttl_s, output)
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)
            self.evictions += 1
            self._metrics.cache_evictions_total.inc()

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        entry = self._entries.get(key) if isinstance(key, bytes) else None
        return entry is not None and self._clock() < entry[0]

    @property
    def hit_rate(self) -> float:
        """Hits over lookups since construction; 0.0 before the first lookup."""
        lookups = self.hits + self.misses
        return self.hits / lookups if lookups else 0.0
