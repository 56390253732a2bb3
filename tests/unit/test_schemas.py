"""The JSON Schema files and examples in schemas/ agree with the msgspec Structs (the real contract)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, get_args

import msgspec
import pytest

from stream_service import schema
from stream_service.errors import ErrorType
from stream_service.messages import ErrorRecord, Request, Result
from stream_service.pipeline.decode import JSON_ENCODER, RequestDecoder

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
EXAMPLES_DIR = SCHEMAS_DIR / "examples"
CONTRACT_DOC = SCHEMAS_DIR.parent / "docs" / "contract.md"
EXAMPLES = [
    pytest.param("request", Request, id="request"),
    pytest.param("result", Result, id="result"),
    pytest.param("error_record", ErrorRecord, id="error_record"),
]


def definition(name: str) -> dict[str, Any]:
    """The object definition a schema file's top-level $ref points at."""
    document = json.loads((SCHEMAS_DIR / f"{name}.schema.json").read_text())
    result: dict[str, Any] = document["$defs"][document["$ref"].rsplit("/", 1)[1]]
    return result


@pytest.mark.parametrize("file_name", sorted(schema.generate()))
def test_schema_files_match_the_structs(file_name: str) -> None:
    """Each schemas/*.schema.json is byte for byte what the Structs generate today."""
    path = SCHEMAS_DIR / file_name
    assert path.is_file(), f"{path} is missing; {schema.REGENERATE_HINT}"
    assert path.read_text(encoding="utf-8") == schema.generate()[file_name], (
        f"{path} is out of date with stream_service/messages.py; {schema.REGENERATE_HINT}"
    )


def test_schema_text_is_stable() -> None:
    """Generated files use indent 2, sorted keys, a trailing newline, and declare draft 2020-12."""
    text = schema.generate()["request.schema.json"]
    document = json.loads(text)
    assert text == json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert document["$schema"] == schema.SCHEMA_DIALECT


@pytest.mark.parametrize(("name", "message_type"), EXAMPLES)
def test_examples_decode_with_the_structs(name: str, message_type: type[msgspec.Struct]) -> None:
    """Each example in schemas/examples decodes strictly into its Struct."""
    raw = (EXAMPLES_DIR / f"{name}.json").read_bytes()
    msgspec.json.decode(raw, type=message_type, strict=True)


@pytest.mark.parametrize(("name", "message_type"), EXAMPLES)
def test_examples_use_only_schema_fields(name: str, message_type: type[msgspec.Struct]) -> None:
    """Each example carries every required field and no field the schema does not define."""
    example = json.loads((EXAMPLES_DIR / f"{name}.json").read_text())
    spec = definition(name)
    assert set(spec["required"]) <= set(example)
    assert set(example) <= set(spec["properties"])


def test_examples_validate_against_json_schema() -> None:
    """Where the jsonschema package is installed, each example validates against its schema file."""
    jsonschema = pytest.importorskip("jsonschema")
    for name in ("request", "result", "error_record"):
        document = json.loads((SCHEMAS_DIR / f"{name}.schema.json").read_text())
        jsonschema.validate(json.loads((EXAMPLES_DIR / f"{name}.json").read_text()), document)


def test_error_record_example_is_what_the_decoder_publishes() -> None:
    """The error record example is exactly what the decode step produces for its payload."""
    example = json.loads((EXAMPLES_DIR / "error_record.json").read_text())
    decoder = RequestDecoder(
        max_prompt_bytes=1024, max_message_bytes=4096, default_encoding="json", known_profiles=None
    )
    failure = decoder.decode(example["payload"].encode(), "application/json")
    assert not isinstance(failure, Request)
    assert json.loads(JSON_ENCODER.encode(failure.to_error_record())) == example


def test_check_reports_stale_and_write_fixes_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--check exits 1 naming the stale files and how to regenerate; --write makes --check pass."""
    assert schema.main(["--check", str(tmp_path)]) == 1
    assert "request.schema.json" in capsys.readouterr().err
    assert schema.main(["--write", str(tmp_path)]) == 0
    assert schema.main(["--check", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(schema.generate())


def test_schema_subcommand_prints_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    """`stream-service schema` prints all three schemas; with a name, only that one."""
    parser = argparse.ArgumentParser(prog="stream-service")
    schema.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["schema"])
    assert args.handler(args) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"request", "result", "error_record"}
    args = parser.parse_args(["schema", "result"])
    assert args.handler(args) == 0
    assert capsys.readouterr().out == schema.generate()["result.schema.json"]


def test_contract_doc_quotes_the_examples() -> None:
    """docs/contract.md shows each example file verbatim, so the documented examples stay valid."""
    contract = CONTRACT_DOC.read_text(encoding="utf-8")
    for name in ("request", "result", "error_record"):
        example = (EXAMPLES_DIR / f"{name}.json").read_text(encoding="utf-8")
        assert f"```json\n{example}```" in contract, f"update the {name} example in {CONTRACT_DOC}"


def test_contract_doc_explains_every_error_type() -> None:
    """docs/contract.md has a row for every error_type an ErrorRecord may carry."""
    contract = CONTRACT_DOC.read_text(encoding="utf-8")
    for error_type in get_args(ErrorType):
        assert f"| `{error_type}` |" in contract, f"document error_type {error_type} in {CONTRACT_DOC}"
