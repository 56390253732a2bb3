"""stream-service schema --asyncapi: an AsyncAPI 3.0 document valid against the official schema,
whose payloads are the contract's Structs and whose headers are the lineage headers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from stream_service import wire
from stream_service.asyncapi import document
from stream_service.cli import main
from stream_service.settings import TopicSettings

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "asyncapi"
OFFICIAL = FIXTURE / "asyncapi-3.0.0.json"
EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(OFFICIAL.read_text(encoding="utf-8")))


def errors_of(doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator().iter_errors(doc)]


def test_vendored_schema_is_the_recorded_one() -> None:
    """The vendored AsyncAPI schema has the sha256 its README records."""
    digest = hashlib.sha256(OFFICIAL.read_bytes()).hexdigest()
    assert digest in (FIXTURE / "README.md").read_text(encoding="utf-8")


def test_document_is_valid_asyncapi_3() -> None:
    """The document validates against the official AsyncAPI 3.0.0 JSON Schema."""
    assert errors_of(document()) == []


def test_the_validation_catches_a_broken_document() -> None:
    """A document with a wrong Kafka binding fails the schema: the check has teeth."""
    doc = document()
    doc["channels"]["requests"]["bindings"]["kafka"]["partitions"] = 0
    doc["operations"]["consumeRequests"]["action"] = "consume"
    assert len(errors_of(doc)) >= 2


def test_channels_follow_the_configured_topics_and_group() -> None:
    """Channel addresses, Kafka topic bindings and the group id come from the topic settings."""
    topics = TopicSettings(input="prompts", results="answers", errors="failures", group_id="workers")
    doc = document(topics)
    addresses = {name: channel["address"] for name, channel in doc["channels"].items()}
    assert addresses == {"requests": "prompts", "results": "answers", "errors": "failures"}
    assert doc["channels"]["results"]["bindings"]["kafka"]["topic"] == "answers"
    group = doc["operations"]["consumeRequests"]["bindings"]["kafka"]["groupId"]
    assert group == {"type": "string", "enum": ["workers"]}
    assert {op["action"] for op in doc["operations"].values()} == {"receive", "send"}


def test_output_headers_are_the_lineage_headers() -> None:
    """Results and errors declare every lineage header of wire.py, the source triple required."""
    headers = document()["components"]["schemas"]["OutputHeaders"]
    names = {wire.SOURCE_TOPIC, wire.SOURCE_PARTITION, wire.SOURCE_OFFSET, wire.CONTENT_TYPE}
    assert set(headers["properties"]) == names | {wire.REQUEST_ID, wire.TENANT}
    assert set(headers["required"]) == names


@pytest.mark.parametrize(
    ("message", "example"),
    [
        pytest.param("request", "request", id="request"),
        pytest.param("result", "result", id="result"),
        pytest.param("errorRecord", "error_record", id="error record"),
    ],
)
def test_payload_schemas_accept_the_contract_examples(message: str, example: str) -> None:
    """Each message's payload schema (the Struct's) accepts the example in schemas/examples."""
    doc = document()
    payload = doc["components"]["messages"][message]["payload"]
    schema = {**payload, "components": doc["components"]}
    instance = json.loads((EXAMPLES / f"{example}.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(schema).validate(instance)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate({**instance, "id": 7})


def test_cli_prints_the_document(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """schema --asyncapi prints the document for the configuration's topics."""
    config = tmp_path / "c.toml"
    config.write_text('[topics]\ninput = "prompts"\n')
    assert main(["schema", "--asyncapi", "--config", str(config)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["channels"]["requests"]["address"] == "prompts"
    assert errors_of(printed) == []
