"""Deterministic requests for ``stream-service produce``: :class:`RequestGenerator`.

A seed fixes every id, prompt, tenant and choice; re-sent prompts under new ids exercise the
result cache; bad records come in five kinds (invalid JSON, wrong schema, oversized prompt,
unknown profile, non-UTF-8 bytes).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Literal, TypeVar

import msgspec

from stream_service.messages import Request
from stream_service.wire import CONTENT_TYPE, CONTENT_TYPES, Encoding

__all__ = ["BAD_KINDS", "DEFAULT_PROFILES", "Generated", "KeyMode", "RequestGenerator"]

KeyMode = Literal["id", "tenant", "none"]
_T = TypeVar("_T")
BAD_KINDS = ("invalid_json", "wrong_schema", "oversized_prompt", "unknown_profile", "non_utf8")
DEFAULT_PROFILES = ("neutral_professional", "creative_storytelling", "marketing_enthusiastic", "tech_startup")
# Larger than the service's default limits.max_prompt_bytes (32 KiB).
OVERSIZED_PROMPT_BYTES = 40 * 1024
_RECENT_FOR_DUPLICATES = 1024
_PROMPT_POOL = 256
_WORDS = (
    "please write a short friendly note about our new product launch for the team and customers "
    "explain how the feature helps people save time every day with clear simple steps and examples "
    "include a warm greeting a concrete story about the morning coffee a bright red bicycle and the "
    "quiet park near the office then finish with a question inviting readers to try it this week"
).split()


class Generated(msgspec.Struct, frozen=True):
    """One record to send, and what kind it is (``valid``, ``duplicate`` or a bad kind)."""

    key: bytes | None
    value: bytes
    kind: str
    tenant: str


class RequestGenerator:
    """Deterministic records for a seed: the same arguments always give the same sequence.

    Raises ValueError for ratios outside [0, 1] or weights that do not match the tenants.
    """

    def __init__(
        self,
        *,
        tenants: Sequence[str] = ("tenant-0",),
        tenant_weights: Sequence[float] | None = None,
        profiles: Sequence[str] = DEFAULT_PROFILES,
        priorities: Sequence[int] = (0,),
        duplicate_ratio: float = 0.0,
        bad_ratio: float = 0.0,
        prompt_bytes: int = 200,
        seed: int = 0,
        key: KeyMode = "id",
        encoding: Encoding = "json",
        id_prefix: str | None = None,
    ) -> None:
        if not tenants or not profiles or not priorities:
            raise ValueError("tenants, profiles and priorities must not be empty")
        if tenant_weights is not None and len(tenant_weights) != len(tenants):
            raise ValueError(f"{len(tenant_weights)} tenant weights for {len(tenants)} tenants")
        for name, ratio in (("duplicate_ratio", duplicate_ratio), ("bad_ratio", bad_ratio)):
            if not 0.0 <= ratio <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {ratio}")
        self._rng = random.Random(seed)
        self._random = self._rng.random
        self._tenants = list(tenants)
        self._weights = list(tenant_weights) if tenant_weights is not None else None
        self._profiles = list(profiles)
        self._priorities = list(priorities)
        self._duplicate_ratio = duplicate_ratio
        self._bad_ratio = bad_ratio
        self._key = key
        self._encode = msgspec.json.encode if encoding == "json" else msgspec.msgpack.encode
        self._encoding = encoding
        self._id_prefix = id_prefix if id_prefix is not None else f"s{seed}-"
        self._recent: deque[tuple[str, str, str]] = deque(maxlen=_RECENT_FOR_DUPLICATES)
        self._pool = [self._prompt_body(prompt_bytes) for _ in range(_PROMPT_POOL)]
        self.headers = [(CONTENT_TYPE, CONTENT_TYPES[encoding].encode())]

    def _prompt_body(self, size: int) -> str:
        words: list[str] = []
        length = 0
        while length < size:
            word = self._rng.choice(_WORDS)
            words.append(word)
            length += len(word) + 1
        return " ".join(words)[: max(1, size)]

    def __iter__(self) -> Iterator[Generated]:
        index = 0
        while True:
            yield self.make(index)
            index += 1

    def make(self, index: int) -> Generated:
        """The record at position ``index`` (call in order: choices consume the seeded stream)."""
        pick = self._pick
        request_id = f"{self._id_prefix}{index:09d}"
        roll = self._random()
        if roll < self._bad_ratio:
            tenant = self._tenant()
            kind = pick(BAD_KINDS)
            value = self._bad(kind, request_id, tenant)
            return Generated(self._record_key(request_id, tenant), value, kind, tenant)
        if self._recent and roll < self._bad_ratio + self._duplicate_ratio:
            prompt, tenant, profile = pick(self._recent)
            kind = "duplicate"
        else:
            tenant, profile = self._tenant(), pick(self._profiles)
            # The index makes every prompt unique, so only intended duplicates hit the cache.
            prompt = f"{pick(self._pool)} (request {index})"
            self._recent.append((prompt, tenant, profile))
            kind = "valid"
        request = Request(
            id=request_id, prompt=prompt, tenant=tenant, profile_name=profile, priority=pick(self._priorities)
        )
        return Generated(self._record_key(request_id, tenant), self._encode(request), kind, tenant)

    def _pick(self, items: Sequence[_T]) -> _T:
        # random() * n rather than choice(): a third of the cost, just as deterministic; a
        # single option consumes no randomness.
        n = len(items)
        return items[0] if n == 1 else items[int(self._random() * n)]

    def _tenant(self) -> str:
        if self._weights is None:
            return self._pick(self._tenants)
        return self._rng.choices(self._tenants, self._weights)[0]

    def _record_key(self, request_id: str, tenant: str) -> bytes | None:
        if self._key == "id":
            return request_id.encode()
        if self._key == "tenant":
            return tenant.encode()
        return None

    def _bad(self, kind: str, request_id: str, tenant: str) -> bytes:
        if kind == "invalid_json":
            return (
                b'{"id": "' + request_id.encode() + b'", "prompt": ' if self._encoding == "json" else b"\xc1"
            )
        if kind == "wrong_schema":
            return self._encode({"id": request_id, "prompt": ["not", "a", "string"], "tenant": tenant})
        if kind == "oversized_prompt":
            request = Request(id=request_id, prompt="x" * OVERSIZED_PROMPT_BYTES, tenant=tenant)
            return self._encode(request)
        if kind == "unknown_profile":
            request = Request(id=request_id, prompt="hello", tenant=tenant, profile_name="no-such-profile")
            return self._encode(request)
        return b"\xff\xfe\xfd not utf-8 \x80"
