"""An AsyncAPI 3.0 document of the service's three topics, generated from the msgspec Structs.

The same Structs as the JSON Schemas of ``schemas/`` (:mod:`stream_service.schema`) give the
message payloads; the headers are the lineage headers of :mod:`stream_service.wire`; each
channel has a Kafka binding (its topic) and each message one for its key. Every channel carries
its message in JSON and in MessagePack (the ``content-type`` header says which). Topic names
and the consumer group come from the configuration, so ``stream-service schema --asyncapi``
describes the deployment it is run for; ``schemas/asyncapi.json`` is the document for the
defaults. Checked against the official AsyncAPI 3.0.0 JSON Schema by the tests.
"""

from __future__ import annotations

import inspect
from typing import Any, Final

import msgspec

from stream_service import __version__
from stream_service.messages import ErrorRecord, Request, Result
from stream_service.settings import TopicSettings
from stream_service.wire import (
    CONTENT_TYPE,
    JSON,
    MSGPACK,
    REQUEST_ID,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    TENANT,
)

__all__ = ["ASYNCAPI_VERSION", "KAFKA_BINDING_VERSION", "document"]

ASYNCAPI_VERSION: Final = "3.0.0"
KAFKA_BINDING_VERSION: Final = "0.5.0"
_REF = "#/components/schemas/{name}"
_DIGITS = {"type": "string", "pattern": "^[0-9]+$"}
_CHANNELS: Final = (
    # channel, topic setting, Struct, message name, key, what it is
    ("requests", "input", Request, "request", "any key (with executor.ordering = key, it decides the order)",
     "Requests to process: one result or one error record answers each."),
    ("results", "results", Result, "result", "the request's id",
     "One Result per input that was processed successfully."),
    ("errors", "errors", ErrorRecord, "errorRecord", "the request's id, when one could be read",
     "One ErrorRecord per input that failed, with its error_type."),
)  # fmt: skip


def _headers(output: bool) -> dict[str, Any]:
    content_type: dict[str, Any] = {"type": "string", "enum": [JSON, MSGPACK]}
    if not output:
        content_type["description"] = "The value's encoding; when absent, delivery.encoding."
        return {"type": "object", "properties": {CONTENT_TYPE: content_type}}
    content_type["description"] = "The value's encoding."
    return {
        "type": "object",
        "description": "Lineage: (source-topic, source-partition, source-offset) names the input answered.",
        "properties": {
            SOURCE_TOPIC: {"type": "string", "description": "The input topic."},
            SOURCE_PARTITION: {**_DIGITS, "description": "The input partition, decimal."},
            SOURCE_OFFSET: {**_DIGITS, "description": "The input offset, decimal."},
            CONTENT_TYPE: content_type,
            REQUEST_ID: {
                "type": "string",
                "description": "The request's id, when the input had a valid one.",
            },
            TENANT: {"type": "string", "description": "The request's tenant, when known."},
        },
        "required": [SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, CONTENT_TYPE],
    }


def _schemas() -> dict[str, Any]:
    _, components = msgspec.json.schema_components((Request, Result, ErrorRecord), ref_template=_REF)
    for definition in components.values():
        if "description" in definition:
            definition["description"] = inspect.cleandoc(definition["description"])
    return {**components, "InputHeaders": _headers(False), "OutputHeaders": _headers(True)}


def document(topics: TopicSettings | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document for ``topics`` (default: the default topic names and group)."""
    topics = topics or TopicSettings()
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel, setting, struct, name, key, description in _CHANNELS:
        address = getattr(topics, setting)
        headers = {"$ref": _REF.format(name="InputHeaders" if channel == "requests" else "OutputHeaders")}
        refs = {}
        for suffix, content_type in (("", JSON), ("Msgpack", MSGPACK)):
            messages[name + suffix] = {
                "name": struct.__name__,
                "title": f"{struct.__name__} ({content_type})",
                "contentType": content_type,
                "payload": {"$ref": _REF.format(name=struct.__name__)},
                "headers": headers,
                "bindings": {
                    "kafka": {
                        "key": {"type": "string", "description": key},
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }
                },
            }
            refs[name + suffix] = {"$ref": f"#/components/messages/{name}{suffix}"}
        channels[channel] = {
            "address": address,
            "description": description,
            "messages": refs,
            "bindings": {"kafka": {"topic": address, "bindingVersion": KAFKA_BINDING_VERSION}},
        }
        operation = "consumeRequests" if channel == "requests" else f"publish{channel.capitalize()}"
        operations[operation] = {
            "action": "receive" if channel == "requests" else "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"} for message in refs],
        }
    operations["consumeRequests"]["bindings"] = {
        "kafka": {
            "groupId": {"type": "string", "enum": [topics.group_id]},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "stream-service",
            "version": __version__,
            "description": (
                "A Kafka request processor: every Request read from the requests topic is answered "
                "by exactly one Result or ErrorRecord, carrying lineage headers that name the input."
            ),
        },
        "defaultContentType": JSON,
        "channels": channels,
        "operations": operations,
        "components": {"schemas": _schemas(), "messages": messages},
    }
