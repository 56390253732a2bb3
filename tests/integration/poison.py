"""A poison corpus: one or more records of every class that once crashed or stalled the service.

Each entry is produced as it would arrive from a misbehaving upstream, including what standard
clients cannot write (a header name that is not UTF-8, written here by patching the batch bytes).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.record.util import calc_crc32c

BAD_NAME = "\x00bad-name"  # its NUL becomes 0xFF in the written batch: not UTF-8
CRC_OFFSET, CRC_FROM = 17, 21  # where a v2 batch keeps its CRC-32C, and where the CRC'd part starts

Headers = list[tuple[str, bytes | None]]


@dataclass
class Poison:
    """One input record and what it is."""

    kind: str
    value: bytes | None
    key: bytes | None = None
    headers: Headers = field(default_factory=list)
    invalid_header_name: bool = False


def _json(body: dict[str, Any]) -> bytes:
    return msgspec.json.encode(body)


def corpus(repeat: int = 3) -> list[Poison]:
    """Every class of the hardening issue, ``repeat`` times, keyed so per-key order is checked too."""
    ext = msgspec.msgpack.Ext(1, b"x")
    out: list[Poison] = []
    for i in range(repeat):
        key = f"poison-{i % 2}".encode()
        out += [
            Poison(
                "null header value", _json({"id": f"nh-{i}", "prompt": "ok:"}), key, [("content-type", None)]
            ),
            Poison(
                "invalid UTF-8 header name",
                _json({"id": f"hn-{i}", "prompt": "ok:"}),
                key,
                [(BAD_NAME, b"v")],
                True,
            ),
            Poison(
                "MessagePack Ext in metadata",
                msgspec.msgpack.encode({"id": f"ext-{i}", "prompt": "ok:", "metadata": {"e": ext}}),
                key,
                [("content-type", b"application/msgpack")],
            ),
            Poison(
                "integer beyond 64 bits",
                b'{"id": "big-%d", "prompt": "ok:", "metadata": {"n": 1%s}}' % (i, b"0" * 30),
                key,
            ),
            Poison(
                "600 KB tenant", _json({"id": f"tenant-{i}", "prompt": "o", "tenant": "t" * 600_000}), key
            ),
            Poison("processor returns an object", _json({"id": f"obj-{i}", "prompt": "object:"}), key),
            Poison(
                "processor returns a numpy-like scalar", _json({"id": f"np-{i}", "prompt": "scalar:"}), key
            ),
            Poison(
                "processor returns text that is not Unicode",
                _json({"id": f"sur-{i}", "prompt": "surrogate:"}),
                key,
            ),
            Poison("processor raises", _json({"id": f"raise-{i}", "prompt": "raise:"}), key),
            Poison("processor hangs", _json({"id": f"hang-{i}", "prompt": "hang:"}), key),
            Poison("output too large", _json({"id": f"huge-{i}", "prompt": "huge:300000"}), key),
            Poison("tombstone", None, key),
            Poison("random bytes", bytes(range(256))[i * 7 :], key),
        ]
    return out


def _patch_header_name(build: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap a batch builder's ``_build`` so BAD_NAME's NUL is written as 0xFF, CRC fixed up."""

    def patched() -> Any:
        buf = bytearray(build())
        at = buf.find(BAD_NAME.encode())
        buf[at] = 0xFF
        struct.pack_into(">I", buf, CRC_OFFSET, calc_crc32c(bytes(buf[CRC_FROM:])))
        return buf

    return patched


async def produce_corpus(bootstrap: str, topic: str, records: list[Poison], partition: int = 0) -> None:
    """Write the records, one batch each, in order, to one partition (a plain producer: acks=1,
    not idempotent, so the batches are written as built)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, enable_idempotence=False, max_request_size=2 << 20
    )
    await producer.start()
    try:
        for rec in records:
            batch = producer.create_batch()
            assert batch.append(key=rec.key, value=rec.value, timestamp=None, headers=rec.headers) is not None
            if rec.invalid_header_name:
                batch._build = _patch_header_name(batch._build)
            await (await producer.send_batch(batch, topic, partition=partition))
    finally:
        await producer.stop()
