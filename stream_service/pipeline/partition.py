"""Partition: which output partition a keyed record goes to, as every Kafka client computes it.

Kafka's default partitioner hashes the key with murmur2 (``toPositive(murmur2(key)) % n``), so
results keyed by request id land where a Java or librdkafka producer would put them. aiokafka's
pure-Python murmur2 reads the key a byte at a time; this one unpacks it four bytes at a time
(about twice as fast, the same hash: a test compares them).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

_SEED = 0x9747B28C
_M = 0x5BD1E995  # murmur2's mixing constant
_MASK = 0xFFFFFFFF
_WORDS = [struct.Struct(f"<{n}I") for n in range(64)]  # little-endian 32-bit words, by count


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data`` (``org.apache.kafka.common.utils.Utils.murmur2``), unsigned."""
    length = len(data)
    h = _SEED ^ length
    n4 = length >> 2
    words = _WORDS[n4] if n4 < len(_WORDS) else struct.Struct(f"<{n4}I")
    for k in words.unpack_from(data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    extra = length & 3
    if extra:
        tail = length & ~3
        if extra >= 3:
            h ^= data[tail + 2] << 16
        if extra >= 2:
            h ^= data[tail + 1] << 8
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_of(key: bytes, partitions: Sequence[int]) -> int:
    """The partition of ``key`` among ``partitions`` (sorted ids), as Kafka's default partitioner picks."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
