"""Encode: each output (a Result or an ErrorRecord) becomes a record with its lineage headers.

Encoding never raises: an output that cannot be encoded becomes its input's error record,
and a record the producer or broker refuses as too large is replaced by a small one that is
sure to fit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec

from stream_service.errors import OutputTooLarge, ProcessorFailed
from stream_service.messages import ErrorRecord, Result
from stream_service.pipeline.work import WorkItem
from stream_service.wire import (
    CONTENT_TYPE,
    CONTENT_TYPES,
    REQUEST_ID,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    TENANT,
    Encoding,
)

Headers = list[tuple[str, bytes]]

TENANT_HEADERS_CACHED = 1024  # tenants whose header is kept built (least recently used go first)
MAX_ERROR_CHARS = 512  # of a replacement's error text
MINIMAL_ERROR = "the output could not be published; see the service's log"


class OutRecord:
    """One record to publish: where, what, and the lineage that ties it to its input."""

    __slots__ = ("topic", "key", "value", "headers", "item", "error_type", "outcome", "minimal")

    def __init__(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers,
        item: WorkItem,
        error_type: str | None = None,
    ):
        self.topic = topic
        self.error_type = error_type  # None for a Result
        self.outcome = "success" if error_type is None else "error"  # or "cached", set by the encoder
        self.key = key
        self.value = value
        self.headers = headers
        self.item = item
        self.minimal = False  # the smallest replacement: nothing can be left out of it any more


class OutputEncoder:
    """Turns outputs into :class:`OutRecord` s: results keyed by request id, errors beside them.

    Every record carries ``source-topic``, ``source-partition``, ``source-offset`` and
    ``content-type``, plus ``request-id`` and ``tenant`` when known (:mod:`stream_service.wire`),
    so any output can be traced to its input and every input proven answered; with tracing on,
    also ``traceparent`` (and ``tracestate``) of its input's request span.

    Guarantees: :meth:`result` and :meth:`error` never raise. A Result that cannot be encoded
    (a processor's content that is not valid Unicode, say) becomes an ``unknown`` ErrorRecord
    without its content and metadata; an ErrorRecord that cannot be encoded loses its metadata
    and payload. :meth:`too_large` builds a replacement of at most a few KiB: ids, tenants and
    profile names are bounded by the schema, and :meth:`minimal` leaves out everything but the id.
    """

    def __init__(self, *, results_topic: str, errors_topic: str, encoding: Encoding) -> None:
        self.results_topic = results_topic
        self.errors_topic = errors_topic
        self.encoding = encoding
        self._encode: Callable[[Any], bytes] = (
            msgspec.json.Encoder().encode if encoding == "json" else msgspec.msgpack.Encoder().encode
        )
        self._content_type = CONTENT_TYPES[encoding].encode()
        self._tenants: OrderedDict[str, tuple[str, bytes]] = OrderedDict()  # tenant -> its header
        self._prefixes: dict[tuple[str, int], Headers] = {}  # input partition -> its lineage headers

    @property
    def cached_tenants(self) -> int:
        """Tenant headers kept built (bounded by ``TENANT_HEADERS_CACHED``)."""
        return len(self._tenants)

    def headers(self, item: WorkItem, request_id: str | None, tenant: str | None) -> Headers:
        # Hot path (once per output): the per-partition headers are built once per partition.
        state = item.state
        where = (state.topic, state.partition)
        prefix = self._prefixes.get(where)
        if prefix is None:
            prefix = self._prefixes[where] = [
                (SOURCE_TOPIC, state.topic.encode()),
                (SOURCE_PARTITION, b"%d" % state.partition),
                (CONTENT_TYPE, self._content_type),
            ]
        offset = (SOURCE_OFFSET, b"%d" % item.offset)
        if request_id is not None and tenant is not None:  # the common case, in one list display
            header = self._tenants.get(tenant) or self._tenant_header(tenant)
            headers = [*prefix, offset, (REQUEST_ID, request_id.encode("utf-8", "surrogateescape")), header]
        else:
            headers = [*prefix, offset]
            if request_id is not None:
                headers.append((REQUEST_ID, request_id.encode("utf-8", "surrogateescape")))
            if tenant is not None:
                headers.append(self._tenant_header(tenant))
        if item.trace is not None:  # tracing on: the request span's traceparent (and tracestate)
            headers += item.trace.headers
        return headers

    def _tenant_header(self, tenant: str) -> tuple[str, bytes]:
        tenants = self._tenants
        header = tenants.get(tenant)
        if header is None:
            header = tenants[tenant] = (TENANT, tenant.encode("utf-8", "surrogateescape"))
            if len(tenants) > TENANT_HEADERS_CACHED:
                tenants.popitem(last=False)
        return header

    def result(self, item: WorkItem, result: Result) -> OutRecord:
        try:
            value = self._encode(result)
        except Exception as exc:  # noqa: BLE001 - one output must never stop the engine
            failed = ProcessorFailed(f"the result could not be encoded as {self.encoding}: {_describe(exc)}")
            return self.error(item, _stand_in(result.id, failed, result.tenant, result.profile_name, 1))
        rec = OutRecord(
            self.results_topic,
            result.id.encode("utf-8", "surrogateescape"),
            value,
            self.headers(item, result.id, result.tenant),
            item,
        )
        if result.cached:
            rec.outcome = "cached"
        return rec

    def error(self, item: WorkItem, record: ErrorRecord) -> OutRecord:
        try:
            value = self._encode(record)
        except Exception:  # noqa: BLE001 - text, metadata or payload the encoding cannot carry
            record = msgspec.structs.replace(
                record, error=_safe(record.error), metadata={}, payload=None, payload_encoding=None
            )
            try:
                value = self._encode(record)
            except Exception:  # noqa: BLE001
                return self.minimal(item, record.id, record.error_type)
        key = record.id.encode("utf-8", "surrogateescape") if record.id is not None else None
        return OutRecord(
            self.errors_topic,
            key,
            value,
            self.headers(item, record.id, record.tenant),
            item,
            record.error_type,
        )

    def too_large(self, out: OutRecord, limit_bytes: int) -> OutRecord:
        """A small ErrorRecord standing in for an output the producer or broker refused as too large."""
        req = out.item.request
        error = OutputTooLarge(
            f"the {out.topic} record is {len(out.value)} bytes, over what the producer "
            f"(kafka.producer_max_request_size={limit_bytes}) or the topic (max.message.bytes) "
            "accepts; shorten the output or raise both limits"
        )
        record = _stand_in(req.id if req else None, error, req.tenant if req else None, None, 1)
        return self.error(out.item, record)

    def minimal(self, item: WorkItem, request_id: str | None, error_type: str) -> OutRecord:
        """The smallest error record for an input: its id, an error type, lineage headers only."""
        record = ErrorRecord(id=request_id, error=MINIMAL_ERROR, error_type=error_type)  # type: ignore[arg-type]
        try:
            value = self._encode(record)
        except Exception:  # noqa: BLE001 - an id that cannot be encoded: leave it out too
            record = ErrorRecord(id=None, error=MINIMAL_ERROR, error_type=error_type)  # type: ignore[arg-type]
            value = self._encode(record)
            request_id = None
        key = request_id.encode("utf-8", "surrogateescape") if request_id is not None else None
        rec = OutRecord(self.errors_topic, key, value, self.headers(item, request_id, None), item, error_type)
        rec.minimal = True
        return rec


def _stand_in(
    request_id: str | None, error: Exception, tenant: str | None, profile_name: str | None, attempts: int
) -> ErrorRecord:
    return ErrorRecord(
        id=request_id,
        error=_safe(str(error)),
        error_type=getattr(error, "error_type", "unknown"),
        attempts=attempts,
        tenant=tenant,
        profile_name=profile_name,
    )


def _safe(text: str) -> str:
    """``text`` bounded to ``MAX_ERROR_CHARS``, lone surrogates written as escapes."""
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS // 2 else text[: MAX_ERROR_CHARS // 2] + "..."
