"""The Kafka settings of issue 15 part 5: -X pass-through, offset reset, compression, static
membership and OAUTHBEARER, from the flags through the loader to the aiokafka clients."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest
from aiokafka.abc import AbstractTokenProvider

from stream_service import clients
from stream_service.client_options import for_client, parse
from stream_service.config import load_config, load_config_with_sources, redacted
from stream_service.config_cli import add_config_arguments, config_from_args
from stream_service.errors import ConfigError
from stream_service.oauth import load_token_provider
from stream_service.tools.connection import add_connection_arguments, tool_config

OAUTH = {
    "STREAM_SERVICE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
    "STREAM_SERVICE_KAFKA__SASL_MECHANISM": "OAUTHBEARER",
}


def error_of(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    return str(info.value)


def run_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser.parse_args(list(argv))


# ------------------------------------------------------------------------------- pass-through


@pytest.mark.parametrize(
    ("key", "value", "keyword", "converted", "clients_"),
    [
        pytest.param("fetch_min_bytes", "1024", "fetch_min_bytes", 1024, {"consumer"}, id="snake_case"),
        pytest.param(
            "fetch.min.bytes", "1024", "fetch_min_bytes", 1024, {"consumer"}, id="Kafka's dotted name"
        ),
        pytest.param("check.crcs", "false", "check_crcs", False, {"consumer"}, id="boolean"),
        pytest.param("max.poll.records", 50, "max_poll_records", 50, {"consumer"}, id="None default, int"),
        pytest.param("client.rack", "eu-1a", "client_rack", "eu-1a", {"consumer"}, id="None default, str"),
        pytest.param(
            "transaction.timeout.ms",
            "30000",
            "transaction_timeout_ms",
            30000,
            {"producer"},
            id="producer only",
        ),
        pytest.param(
            "retry.backoff.ms",
            "250",
            "retry_backoff_ms",
            250,
            {"consumer", "producer", "admin"},
            id="every client",
        ),
    ],
)
def test_client_option_is_mapped_and_converted(
    key: str, value: object, keyword: str, converted: object, clients_: set[str]
) -> None:
    """An entry names aiokafka's keyword in either spelling; its value takes the keyword's type."""
    option = parse(key, value)
    assert (option.keyword, option.value, set(option.clients)) == (keyword, converted, clients_)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        pytest.param("fetch_min_byte", "1", "did you mean fetch_min_bytes?", id="typo"),
        pytest.param("fetch.max.bytes", "1", "is the setting kafka.fetch_max_bytes", id="owned by a setting"),
        pytest.param("enable.auto.commit", "true", "is fixed (the service commits", id="fixed"),
        pytest.param("partitioner", "x", "takes an object", id="not a plain value"),
        pytest.param(
            "fetch_min_bytes", "lots", "an integer for aiokafka's consumer fetch_min_bytes", id="type"
        ),
    ],
)
def test_bad_client_option_says_why(key: str, value: object, expected: str) -> None:
    """Unknown, owned, fixed and mistyped entries are refused with the reason."""
    with pytest.raises(ValueError) as info:
        parse(key, value)
    assert expected in str(info.value)


def test_each_client_gets_only_what_its_class_takes() -> None:
    """A consumer-only option never reaches a producer or an admin client; fixed values win."""
    options = {"bootstrap_servers": "b:1", "fetch_min_bytes": 9, "transaction_timeout_ms": 5, "linger_ms": 1}
    assert for_client("consumer", options) == {"bootstrap_servers": "b:1", "fetch_min_bytes": 9}
    assert for_client("producer", options, linger_ms=7) == {
        "bootstrap_servers": "b:1",
        "transaction_timeout_ms": 5,
        "linger_ms": 7,
    }
    assert for_client("admin", options) == {"bootstrap_servers": "b:1"}


def test_x_flag_sets_entries_over_the_file(tmp_path: Path) -> None:
    """-X adds to (and overrides entries of) the file's kafka.client_options, under aiokafka's names."""
    path = tmp_path / "c.toml"
    path.write_text('[kafka.client_options]\n"fetch.min.bytes" = 10\nmetadata_max_age_ms = 60000\n')
    args = run_args("--config", str(path), "-X", "fetch.min.bytes=1024", "-X", "max_poll_records=50")
    config = config_from_args(args, environ={})
    assert config.kafka.client_options == {
        "fetch_min_bytes": 1024,
        "metadata_max_age_ms": 60000,
        "max_poll_records": 50,
    }


def test_x_flag_error_names_the_flag() -> None:
    """A bad -X entry is one line naming the entry, the flag and what is expected."""
    with pytest.raises(ConfigError) as info:
        config_from_args(run_args("-X", "fetch.min.bytes=lots"), environ={})
    assert str(info.value) == (
        "invalid setting kafka.client_options.fetch.min.bytes = lots (from flag -X fetch.min.bytes): "
        "expected an integer for aiokafka's consumer fetch_min_bytes"
    )
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        config_from_args(run_args("-X", "fetch.min.bytes"), environ={})


def test_secret_given_with_x_is_never_shown() -> None:
    """-X sasl.password=... is refused (it is kafka.sasl_password) without echoing the value."""
    with pytest.raises(ConfigError) as info:
        config_from_args(run_args("-X", "sasl.password=hunter2"), environ={})
    assert "hunter2" not in str(info.value) and "kafka.sasl_password" in str(info.value)


def test_client_options_from_the_environment_are_redacted_when_secret_named() -> None:
    """Entries come from JSON in the environment too; a secret-named entry shows as ***."""
    config = load_config(environ={"STREAM_SERVICE_KAFKA__CLIENT_OPTIONS": '{"client.rack": "eu-1a"}'})
    assert config.kafka.client_options == {"client_rack": "eu-1a"}
    shown = redacted(load_config(environ={}, flags={"processor.options.api_token": "s3cret"}))
    assert shown["processor"]["options"] == {"api_token": "***"}


def test_tools_take_x_and_short_flags() -> None:
    """The tools' -b and -X reach the configuration they connect with."""
    parser = argparse.ArgumentParser()
    add_connection_arguments(parser)
    args = parser.parse_args(["-b", "k:9", "-X", "fetch.max.wait.ms=100"])
    config = tool_config(args)
    assert config.kafka.bootstrap_servers == "k:9"
    assert config.kafka.client_options == {"fetch_max_wait_ms": 100}


def test_run_short_flags() -> None:
    """run/config take -b, -t (the requests topic) and -G or -g (the group), as kcat does."""
    config = config_from_args(run_args("-b", "k:9", "-t", "in", "-G", "grp"), environ={})
    assert (config.kafka.bootstrap_servers, config.topics.input, config.topics.group_id) == (
        "k:9",
        "in",
        "grp",
    )
    assert config_from_args(run_args("-g", "other"), environ={}).topics.group_id == "other"


# ------------------------------------------------------------------------ the service's clients


async def test_service_clients_get_the_new_settings() -> None:
    """Offset reset, static membership and -X reach the consumer; compression reaches the producers."""
    config = load_config(
        environ={
            "STREAM_SERVICE_KAFKA__AUTO_OFFSET_RESET": "latest",
            "STREAM_SERVICE_KAFKA__GROUP_INSTANCE_ID": "worker-0",
            "STREAM_SERVICE_KAFKA__COMPRESSION_TYPE": "gzip",
            "STREAM_SERVICE_KAFKA__CLIENT_OPTIONS": (
                '{"fetch.min.bytes": "2048", "transaction.timeout.ms": 30000}'
            ),
        }
    )
    consumer = clients.service_consumer(config)  # not started: it keeps the arguments until then
    assert consumer._fetch_min_bytes == 2048
    assert consumer._group_instance_id == "worker-0"
    assert consumer._auto_offset_reset == "latest"
    await consumer.stop()
    producer = clients.transactional_producer(config, "tx-1")
    assert producer._compression_type == "gzip"
    assert producer._txn_manager.transaction_timeout_ms == 30000
    await producer.stop()


def test_tools_options_carry_compression_for_the_producer_only() -> None:
    """The tools' options hold compression and -X; each client keeps what it takes."""
    config = load_config(environ={"STREAM_SERVICE_KAFKA__COMPRESSION_TYPE": "gzip"})
    options = clients.tools_options(config)
    assert for_client("producer", options)["compression_type"] == "gzip"
    assert "compression_type" not in for_client("consumer", options)


async def test_defaults_keep_the_service_reading_the_backlog() -> None:
    """By default a new group reads from the earliest offset, uncompressed, as a dynamic member."""
    consumer = clients.service_consumer(load_config(environ={}))
    assert consumer._auto_offset_reset == "earliest"
    assert consumer._group_instance_id is None
    await consumer.stop()
    producer = clients.service_producer(load_config(environ={}))
    assert producer._compression_type is None
    await producer.stop()


def test_compression_without_its_codec_fails_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    """zstd without cramjam is a one-line startup error naming the package; gzip always works."""
    from aiokafka import codec

    monkeypatch.setattr(codec, "has_zstd", lambda: False)
    message = error_of(environ={"STREAM_SERVICE_KAFKA__COMPRESSION_TYPE": "zstd"})
    assert message.startswith("invalid setting kafka.compression_type = zstd (from env ")
    assert "cramjam" in message and "stream-service[compression]" in message
    load_config(environ={"STREAM_SERVICE_KAFKA__COMPRESSION_TYPE": "gzip"})


def test_empty_group_instance_id_is_refused() -> None:
    """A blank static member name is an error, not a silent dynamic member."""
    assert "unique to this replica" in error_of(environ={"STREAM_SERVICE_KAFKA__GROUP_INSTANCE_ID": " "})


# ------------------------------------------------------------------------------- OAUTHBEARER


def test_oauthbearer_needs_a_token_provider_not_a_password() -> None:
    """OAUTHBEARER asks for sasl_oauth_token_provider; PLAIN/SCRAM still ask for user and password."""
    message = error_of(environ=OAUTH)
    assert message.startswith("invalid setting kafka.sasl_oauth_token_provider = none")
    assert "file:PATH or python:package.module:attribute when kafka.sasl_mechanism is OAUTHBEARER" in message
    environ = {**OAUTH, "STREAM_SERVICE_KAFKA__SASL_OAUTH_TOKEN_PROVIDER": "python:my_tokens:provider"}
    config = load_config(environ=environ)
    assert config.kafka.sasl_username is None


def test_token_provider_only_with_oauthbearer(tmp_path: Path) -> None:
    """A token provider with another mechanism, or a missing token file, is refused in one line."""
    environ = {"STREAM_SERVICE_KAFKA__SASL_OAUTH_TOKEN_PROVIDER": "python:m:f"}
    assert "none unless kafka.sasl_mechanism is OAUTHBEARER (it is unset" in error_of(environ=environ)
    environ = {**OAUTH, "STREAM_SERVICE_KAFKA__SASL_OAUTH_TOKEN_PROVIDER": f"file:{tmp_path}/missing"}
    assert "naming an existing file" in error_of(environ=environ)
    environ = {**OAUTH, "STREAM_SERVICE_KAFKA__SASL_OAUTH_TOKEN_PROVIDER": "token-please"}
    assert "expected file:PATH or python:package.module:attribute" in error_of(environ=environ)


async def test_file_token_provider_reads_the_file_at_every_handshake(tmp_path: Path) -> None:
    """file:PATH gives the file's content, stripped, read again each time (a rotated token is seen)."""
    path = tmp_path / "token"
    path.write_text("first\n")
    provider = load_token_provider(f"file:{path}")
    assert isinstance(provider, AbstractTokenProvider)
    assert await provider.token() == "first"
    path.write_text("second")
    assert await provider.token() == "second"


async def test_python_token_providers_are_wrapped_for_aiokafka() -> None:
    """A function, a class and an object with token()/extensions() all become aiokafka providers."""
    function = load_token_provider("python:tests.fixtures.token_providers:sync_token")
    built = load_token_provider("python:tests.fixtures.token_providers:AsyncProvider")
    assert isinstance(function, AbstractTokenProvider) and isinstance(built, AbstractTokenProvider)
    assert await function.token() == "sync-token"
    assert await built.token() == "async-token"
    assert built.extensions() == {"logicalCluster": "lkc-1"}
    with pytest.raises(ConfigError, match="cannot load it: ModuleNotFoundError"):
        load_token_provider("python:no_such_module_here:token")


def test_oauthbearer_connection_options_carry_the_provider(tmp_path: Path) -> None:
    """With OAUTHBEARER every client gets the provider and no user name or password."""
    token = tmp_path / "token"
    token.write_text("t")
    environ = {**OAUTH, "STREAM_SERVICE_KAFKA__SASL_OAUTH_TOKEN_PROVIDER": f"file:{token}"}
    config, sources = load_config_with_sources(environ=environ)
    options = clients.connection_options(config)
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    assert asyncio.run(options["sasl_oauth_token_provider"].token()) == "t"
    assert "sasl_plain_password" not in options
    assert sources["kafka.sasl_oauth_token_provider"].startswith("env ")
