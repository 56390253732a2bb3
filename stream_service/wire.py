"""Wire constants: the header names and content types every record of ours carries.

The message bodies are in :mod:`stream_service.messages`; this module is the rest of the
contract that downstream consumers and the operator tools read. Header values are bytes on
the wire; these names are the keys.

Output records (results and errors) carry::

    source-topic      the input topic                      always
    source-partition  the input partition, decimal         always
    source-offset     the input offset, decimal            always
    content-type      application/json | application/msgpack   always
    request-id        the request's id                     when the input had a valid id
    tenant            the request's tenant                 when known
    traceparent       W3C trace context of the request span   with tracing.enabled
    tracestate        W3C vendor trace state                  with tracing.enabled, when not empty

Input records may carry ``content-type`` (else ``delivery.encoding`` is assumed) and, read only
with ``tracing.enabled``, ``traceparent``/``tracestate`` (W3C Trace Context), whose trace the
request span continues. Input records that ``stream-service replay`` re-produced also carry (the
service ignores both, and its outputs carry only the lineage above, of the re-produced record)::

    replay-of         <topic>/<partition>/<offset> of the request's first record   on replays
    replay-count      replays of that request so far, decimal: 1, 2, ...            on replays
"""

from __future__ import annotations

from typing import Final, Literal

Encoding = Literal["json", "msgpack"]

SOURCE_TOPIC: Final = "source-topic"
SOURCE_PARTITION: Final = "source-partition"
SOURCE_OFFSET: Final = "source-offset"
CONTENT_TYPE: Final = "content-type"
REQUEST_ID: Final = "request-id"
TENANT: Final = "tenant"
REPLAY_OF: Final = "replay-of"
"""On a replayed input: ``<topic>/<partition>/<offset>`` of the request's original record."""
REPLAY_COUNT: Final = "replay-count"
"""On a replayed input: how many times the request has been replayed (1 on the first replay)."""
TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"

JSON: Final = "application/json"
MSGPACK: Final = "application/msgpack"
CONTENT_TYPES: Final[dict[Encoding, str]] = {"json": JSON, "msgpack": MSGPACK}
"""The content type each output encoding is labelled with."""
CONTENT_TYPE_ENCODINGS: Final[dict[str, Encoding]] = {
    JSON: "json",
    MSGPACK: "msgpack",
    "application/x-msgpack": "msgpack",
}
"""Content types accepted on input (parameters such as ``; charset=utf-8`` are ignored)."""
