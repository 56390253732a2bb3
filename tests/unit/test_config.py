"""The configuration loader: sources, precedence, one-line errors, cross-field rules, secrets, docs."""

from __future__ import annotations

import argparse
import json
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_service.config import (
    SETTINGS,
    Config,
    TenantLimit,
    load_config,
    load_config_with_sources,
    redacted,
)
from stream_service.config_cli import add_config_arguments, config_from_args, register
from stream_service.errors import ConfigError
from stream_service.tools.show_config import reference_row

SECRET = "hunter2-do-not-print"
CONVENTIONAL_VARIABLES = frozenset(
    {
        "KAFKA_BOOTSTRAP_SERVERS",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
    }
)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "service.toml"
    path.write_text(text)
    return str(path)


def parse_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser.parse_args(list(argv))


def config_error(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message, "a ConfigError is one line"
    return message


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """os.environ without any variable the loader reads (the developer's shell may set some)."""
    for name in list(os.environ):
        if name.startswith("STREAM_SERVICE_") or name.upper() in CONVENTIONAL_VARIABLES:
            monkeypatch.delenv(name)
    yield


# -------------------------------------------------------------------------------------- sources


def test_no_sources_give_the_defaults() -> None:
    """With no file, no environment and no flags the configuration is all defaults."""
    assert load_config(environ={}) == Config()


def test_file_sets_settings(tmp_path: Path) -> None:
    """A TOML file sets settings by section, including nested sections and tables."""
    path = write_toml(
        tmp_path,
        """
        [topics]
        input = "prompts"
        [processor.http]
        model = "small"
        [limiter.tenants.acme]
        rate = 5
        """,
    )
    config = load_config(file=path, environ={})
    assert config.topics.input == "prompts"
    assert config.processor.http.model == "small"
    assert config.limiter.tenants == {"acme": TenantLimit(rate=5.0)}


def test_environment_sets_settings_of_every_type() -> None:
    """Environment text converts to ints, floats, bools, literals, optionals and JSON tables."""
    config = load_config(
        environ={
            "STREAM_SERVICE_BATCH__MAX_SIZE": "1000",
            "STREAM_SERVICE_BATCH__LINGER_MS": "2.5",
            "STREAM_SERVICE_BATCH__ADAPTIVE": "false",
            "STREAM_SERVICE_EXECUTOR__KIND": "thread",
            "STREAM_SERVICE_LIMITER__GLOBAL_RATE": "100",
            "STREAM_SERVICE_OBSERVABILITY__METRICS_PORT": "",
            "STREAM_SERVICE_LIMITER__TENANTS": '{"acme": {"rate": 5, "burst": 10}}',
            "STREAM_SERVICE_PROCESSOR__HTTP__BASE_URL": "http://model:8000/v1",
        }
    )
    assert config.batch.max_size == 1000
    assert config.batch.linger_ms == 2.5
    assert config.batch.adaptive is False
    assert config.executor.kind == "thread"
    assert config.limiter.global_rate == 100.0
    assert config.observability.metrics_port is None
    assert config.limiter.tenants == {"acme": TenantLimit(rate=5.0, burst=10)}
    assert config.processor.http.base_url == "http://model:8000/v1"


def test_kafka_bootstrap_servers_variable() -> None:
    """KAFKA_BOOTSTRAP_SERVERS sets the brokers; the STREAM_SERVICE_ variable wins over it."""
    assert load_config(environ={"KAFKA_BOOTSTRAP_SERVERS": "a:1"}).kafka.bootstrap_servers == "a:1"
    environ = {"KAFKA_BOOTSTRAP_SERVERS": "a:1", "STREAM_SERVICE_KAFKA__BOOTSTRAP_SERVERS": "b:2"}
    assert load_config(environ=environ).kafka.bootstrap_servers == "b:2"


def test_config_file_from_environment(tmp_path: Path) -> None:
    """STREAM_SERVICE_CONFIG names the file when no --config is given; --config wins over it."""
    env_file = write_toml(tmp_path, '[topics]\ninput = "from-env-file"\n')
    flag_file = tmp_path / "flag.toml"
    flag_file.write_text('[topics]\ninput = "from-flag-file"\n')
    environ = {"STREAM_SERVICE_CONFIG": env_file}
    assert load_config(environ=environ).topics.input == "from-env-file"
    assert load_config(file=str(flag_file), environ=environ).topics.input == "from-flag-file"


def test_flags_from_command_line() -> None:
    """Named flags and --set map onto their settings, with named flags winning over --set."""
    args = parse_args(
        "--input-topic=in",
        "--group-id=g",
        "--executor=process",
        "--metrics-port=0",
        "--set",
        "batch.max_size=100",
        "--set",
        "topics.input=overridden-by-named-flag",
    )
    config = config_from_args(args, environ={})
    assert (config.topics.input, config.topics.group_id) == ("in", "g")
    assert (config.executor.kind, config.observability.metrics_port, config.batch.max_size) == (
        "process",
        0,
        100,
    )


def test_executor_flag_rejects_unknown_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    """--executor only accepts async, thread and process."""
    with pytest.raises(SystemExit):
        parse_args("--executor=fiber")
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("file_value", "environ", "argv", "expected"),
    [
        pytest.param("file", {}, [], "file", id="file over default"),
        pytest.param("file", {"STREAM_SERVICE_TOPICS__INPUT": "env"}, [], "env", id="env over file"),
        pytest.param(
            "file",
            {"STREAM_SERVICE_TOPICS__INPUT": "env"},
            ["--input-topic=flag"],
            "flag",
            id="flag over env",
        ),
        pytest.param(
            None, {"STREAM_SERVICE_TOPICS__INPUT": "env"}, ["--set", "topics.input=set"], "set", id="--set"
        ),
    ],
)
def test_precedence(
    tmp_path: Path, file_value: str | None, environ: dict[str, str], argv: list[str], expected: str
) -> None:
    """defaults < file < environment < flags, for the same setting."""
    if file_value is not None:
        argv = ["--config", write_toml(tmp_path, f'[topics]\ninput = "{file_value}"\n'), *argv]
    assert config_from_args(parse_args(*argv), environ=environ).topics.input == expected


def test_sources_are_tracked(tmp_path: Path) -> None:
    """Every provided setting records where it came from; defaults record nothing."""
    path = write_toml(tmp_path, "[batch]\nmax_size = 100\n")
    _, sources = load_config_with_sources(
        file=path,
        environ={"STREAM_SERVICE_BATCH__MIN_SIZE": "2"},
        flags={"topics.input": "x"},
        flag_labels={"topics.input": "flag --input-topic"},
    )
    assert sources == {
        "batch.max_size": f"file {path}",
        "batch.min_size": "env STREAM_SERVICE_BATCH__MIN_SIZE",
        "topics.input": "flag --input-topic",
    }


# ------------------------------------------------------------------------------- invalid values


def test_bad_value_from_file_names_file(tmp_path: Path) -> None:
    """A bad value in the file is one line naming the setting, the file and what is allowed."""
    path = write_toml(tmp_path, "[batch]\nmax_size = -3\n")
    assert config_error(file=path, environ={}) == (
        f"invalid setting batch.max_size = -3 (from file {path}): expected an integer > 0"
    )


def test_bad_value_from_environment_names_variable() -> None:
    """A bad environment value is one line naming the setting and the variable."""
    assert config_error(environ={"STREAM_SERVICE_BATCH__MAX_SIZE": "-3"}) == (
        "invalid setting batch.max_size = -3 (from env STREAM_SERVICE_BATCH__MAX_SIZE): "
        "expected an integer > 0"
    )


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            ["--set", "batch.max_size=-3"],
            "invalid setting batch.max_size = -3 (from flag --set batch.max_size): expected an integer > 0",
            id="--set",
        ),
        pytest.param(
            ["--metrics-port=70000"],
            "invalid setting observability.metrics_port = 70000 (from flag --metrics-port): "
            "expected an integer from 0 to 65535, or none",
            id="named flag",
        ),
        pytest.param(
            ["--set", "observability.log_level=loud"],  # --log-level itself only takes its choices
            "invalid setting observability.log_level = loud (from flag --set observability.log_level): "
            "expected one of debug, error, info, warning",
            id="literal",
        ),
    ],
)
def test_bad_value_from_flag_names_flag(argv: list[str], expected: str) -> None:
    """A bad flag value is one line naming the setting and the flag."""
    with pytest.raises(ConfigError) as info:
        config_from_args(parse_args(*argv), environ={})
    assert str(info.value) == expected


def test_wrong_type_in_file_is_not_coerced(tmp_path: Path) -> None:
    """The file is typed TOML: a quoted number for an integer setting is an error, not a guess."""
    path = write_toml(tmp_path, '[batch]\nmax_size = "100"\n')
    assert config_error(file=path, environ={}) == (
        f'invalid setting batch.max_size = "100" (from file {path}): expected an integer > 0'
    )


def test_bad_table_entry_names_the_entry() -> None:
    """An invalid tenant override names the tenant and field, not just the table."""
    environ = {"STREAM_SERVICE_LIMITER__TENANTS": '{"acme": {"rate": -1}}'}
    assert config_error(environ=environ) == (
        "invalid setting limiter.tenants.acme.rate = -1 (from env STREAM_SERVICE_LIMITER__TENANTS): "
        "expected a number > 0, or none"
    )


def test_unknown_field_in_table_entry() -> None:
    """An unknown key inside a tenant override is named with the keys that are allowed."""
    environ = {"STREAM_SERVICE_LIMITER__TENANTS": '{"acme": {"rat": 1}}'}
    assert config_error(environ=environ) == (
        "unknown setting limiter.tenants.acme.rat (from env STREAM_SERVICE_LIMITER__TENANTS); "
        "known: rate, burst, max_in_flight, weight"
    )


def test_table_from_environment_must_be_json() -> None:
    """A table setting given as non-JSON text says that JSON is expected."""
    message = config_error(environ={"STREAM_SERVICE_LIMITER__TENANTS": "acme=5"})
    assert message.startswith(
        "invalid setting limiter.tenants = <not JSON> (from env STREAM_SERVICE_LIMITER__TENANTS): "
        "expected a table mapping names to tables of rate, burst, max_in_flight, weight, written as JSON ("
    )


def test_malformed_table_is_not_echoed() -> None:
    """A malformed JSON table is not shown in the error: it may hold a secret."""
    message = config_error(environ={"STREAM_SERVICE_PROCESSOR__OPTIONS": f'{{"token": "{SECRET}"'})
    assert SECRET not in message


def test_unknown_environment_variable_is_named() -> None:
    """A misspelt STREAM_SERVICE_<SECTION>__<FIELD> variable is an error naming it and the right one."""
    assert config_error(environ={"STREAM_SERVICE_BATCH__MAX_SIZ": "5"}) == (
        "unknown environment variable STREAM_SERVICE_BATCH__MAX_SIZ: no setting reads it; "
        "did you mean STREAM_SERVICE_BATCH__MAX_SIZE?"
    )


def test_kubernetes_service_variables_do_not_stop_the_service() -> None:
    """Variables Kubernetes injects for a Service named stream-service (no ``__``) are left alone."""
    injected = {
        "STREAM_SERVICE_PORT": "tcp://10.0.0.7:8080",
        "STREAM_SERVICE_PORT_8080_TCP": "tcp://10.0.0.7:8080",
        "STREAM_SERVICE_PORT_8080_TCP_ADDR": "10.0.0.7",
        "STREAM_SERVICE_SERVICE_HOST": "10.0.0.7",
        "STREAM_SERVICE_SERVICE_PORT": "8080",
        "STREAM_SERVICE_SERVICE_PORT_OPS": "8080",
    }
    assert load_config(environ=injected) == Config()


@pytest.mark.parametrize(
    "name",
    [
        "STREAM_SERVICE_CONFIG",
        "STREAM_SERVICE_HTTP_API_KEY",
        "STREAM_SERVICE_KAFKA_CACHE",
        "OTHER_TOOL_SETTING",
    ],
)
def test_variables_that_are_not_settings_are_allowed(name: str, tmp_path: Path) -> None:
    """Variables read by other parts of the project, or not ours at all, are not typos."""
    value = write_toml(tmp_path, "") if name == "STREAM_SERVICE_CONFIG" else "x"
    assert load_config(environ={name: value}).topics == Config().topics


def test_variable_named_by_api_key_env_is_allowed() -> None:
    """The variable processor.http.api_key_env points at holds a secret, not a setting."""
    environ = {
        "STREAM_SERVICE_PROCESSOR__HTTP__API_KEY_ENV": "STREAM_SERVICE_MY_KEY",
        "STREAM_SERVICE_MY_KEY": "k",
    }
    assert load_config(environ=environ).processor.http.api_key == "k"


def test_unknown_key_in_file_names_key_and_file(tmp_path: Path) -> None:
    """A misspelt key in the file is an error naming the key and the file."""
    path = write_toml(tmp_path, "[batch]\nmax_sise = 5\n")
    assert config_error(file=path, environ={}) == (
        f"unknown setting batch.max_sise (from file {path}); did you mean batch.max_size?"
    )


def test_unknown_section_in_file(tmp_path: Path) -> None:
    """A misspelt section is an error too."""
    path = write_toml(tmp_path, "[bach]\nmax_size = 5\n")
    assert (
        config_error(file=path, environ={}) == f"unknown setting bach (from file {path}); did you mean batch?"
    )


def test_section_must_be_a_table(tmp_path: Path) -> None:
    """A section given a plain value is an error saying a table was expected."""
    path = write_toml(tmp_path, "batch = 5\n")
    assert (
        config_error(file=path, environ={})
        == f"invalid setting batch = 5 (from file {path}): expected a table [batch]"
    )


def test_unknown_flag_setting() -> None:
    """--set with a key that names no setting is an error naming it."""
    with pytest.raises(
        ConfigError, match=r"^unknown setting batch\.maxsize \(from flag --set batch\.maxsize\)"
    ):
        config_from_args(parse_args("--set", "batch.maxsize=5"), environ={})


def test_set_needs_key_and_value() -> None:
    """--set without '=' is an error showing the expected form."""
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        config_from_args(parse_args("--set", "batch.max_size"), environ={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("[batch\n", "is not valid TOML", id="invalid TOML"),
        pytest.param(None, "does not exist (from flag --config)", id="missing file"),
    ],
)
def test_unreadable_file(tmp_path: Path, text: str | None, expected: str) -> None:
    """A file that is missing or not TOML is an error naming the file."""
    path = write_toml(tmp_path, text) if text is not None else str(tmp_path / "absent.toml")
    message = config_error(file=path, environ={})
    assert path in message
    assert expected in message


# ------------------------------------------------------------------------------ cross-field rules


def test_sasl_protocol_needs_credentials() -> None:
    """A SASL protocol without a mechanism, user or password is rejected, naming what is missing."""
    environ = {
        "STREAM_SERVICE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "STREAM_SERVICE_KAFKA__SASL_MECHANISM": "PLAIN",
    }
    assert config_error(environ=environ) == (
        "invalid setting kafka.sasl_username = none (from default): expected a string when "
        "kafka.security_protocol is SASL_SSL (from env STREAM_SERVICE_KAFKA__SECURITY_PROTOCOL)"
    )
    environ |= {"STREAM_SERVICE_KAFKA__SASL_USERNAME": "u", "STREAM_SERVICE_KAFKA__SASL_PASSWORD": SECRET}
    assert load_config(environ=environ).kafka.sasl_password == SECRET


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param(
            {"STREAM_SERVICE_BATCH__MAX_SIZE": "4", "STREAM_SERVICE_BATCH__MIN_SIZE": "8"},
            "invalid setting batch.max_size = 4 (from env STREAM_SERVICE_BATCH__MAX_SIZE): "
            "expected a value >= batch.min_size (8, from env STREAM_SERVICE_BATCH__MIN_SIZE)",
            id="min above max",
        ),
        pytest.param(
            {"STREAM_SERVICE_RETRY__MAX_BACKOFF_S": "0.01"},
            "invalid setting retry.max_backoff_s = 0.01 (from env STREAM_SERVICE_RETRY__MAX_BACKOFF_S): "
            "expected a value >= retry.initial_backoff_s (0.1, from default)",
            id="max backoff below initial",
        ),
        pytest.param(
            {"STREAM_SERVICE_KAFKA__HEARTBEAT_INTERVAL_MS": "45000"},
            "invalid setting kafka.heartbeat_interval_ms = 45000 "
            "(from env STREAM_SERVICE_KAFKA__HEARTBEAT_INTERVAL_MS): "
            "expected a value < kafka.session_timeout_ms (45000, from default)",
            id="heartbeat not below session timeout",
        ),
    ],
)
def test_ordered_settings(environ: dict[str, str], expected: str) -> None:
    """Settings that bound each other are checked, blaming the one from the later source."""
    assert config_error(environ=environ) == expected


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        pytest.param("resonance", True, id="resonance"),
        pytest.param("http", True, id="http"),
        pytest.param("echo", True, id="echo"),
        pytest.param("python:my_pkg.processors:build", True, id="python plugin"),
        pytest.param("python:my_pkg", False, id="plugin without attribute"),
        pytest.param("gpt", False, id="unknown name"),
    ],
)
def test_processor_name(name: str, valid: bool) -> None:
    """processor.name is a built-in processor or python:package.module:attribute."""
    if valid:
        assert load_config(environ={}, flags={"processor.name": name}).processor.name == name
    else:
        assert config_error(environ={}, flags={"processor.name": name}) == (
            f"invalid setting processor.name = {name} (from flag --set processor.name): "
            "expected resonance, http, echo, or python:package.module:attribute"
        )


def test_ssl_files_must_exist(tmp_path: Path) -> None:
    """An SSL file setting must name an existing file."""
    missing = str(tmp_path / "ca.pem")
    assert config_error(environ={"STREAM_SERVICE_KAFKA__SSL_CAFILE": missing}) == (
        f"invalid setting kafka.ssl_cafile = {missing} (from env STREAM_SERVICE_KAFKA__SSL_CAFILE): "
        "expected the path of an existing file"
    )
    Path(missing).write_text("cert")
    assert load_config(environ={"STREAM_SERVICE_KAFKA__SSL_CAFILE": missing}).kafka.ssl_cafile == missing


def test_api_key_file_wins_over_variable(tmp_path: Path) -> None:
    """processor.http.api_key comes from api_key_file when set, else from the variable api_key_env names."""
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    assert (
        load_config(environ={"STREAM_SERVICE_HTTP_API_KEY": "from-env"}).processor.http.api_key == "from-env"
    )
    environ = {
        "STREAM_SERVICE_HTTP_API_KEY": "from-env",
        "STREAM_SERVICE_PROCESSOR__HTTP__API_KEY_FILE": str(key_file),
    }
    assert load_config(environ=environ).processor.http.api_key == "from-file"


# ---------------------------------------------------------------------------------------- secrets


def secret_config(tmp_path: Path) -> Config:
    key_file = tmp_path / "api-key"
    key_file.write_text(SECRET)
    return load_config(
        environ={
            "STREAM_SERVICE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "STREAM_SERVICE_KAFKA__SASL_MECHANISM": "PLAIN",
            "STREAM_SERVICE_KAFKA__SASL_USERNAME": "svc",
            "STREAM_SERVICE_KAFKA__SASL_PASSWORD": SECRET,
            "STREAM_SERVICE_KAFKA__SSL_PASSWORD": SECRET,
            "STREAM_SERVICE_PROCESSOR__HTTP__API_KEY_FILE": str(key_file),
            "STREAM_SERVICE_PROCESSOR__OPTIONS": json.dumps(
                {"auth": {"token": SECRET}, "client_secret": SECRET}
            ),
        }
    )


def test_secrets_not_in_repr(tmp_path: Path) -> None:
    """repr() and str() of a Config never show a secret."""
    config = secret_config(tmp_path)
    assert config.kafka.sasl_password == SECRET  # the value itself is usable
    for text in (repr(config), str(config), repr(config.kafka), repr(config.processor)):
        assert SECRET not in text
    assert "sasl_password='***'" in repr(config.kafka)


def test_secrets_redacted(tmp_path: Path) -> None:
    """redacted() replaces every secret, nested ones included, and leaves None as None."""
    shown = redacted(secret_config(tmp_path))
    assert SECRET not in json.dumps(shown)
    assert shown["kafka"]["sasl_password"] == "***"
    assert shown["processor"]["http"]["api_key"] == "***"
    assert shown["processor"]["options"] == {"auth": {"token": "***"}, "client_secret": "***"}
    assert redacted(Config())["kafka"]["sasl_password"] is None


def test_secret_not_in_error_message() -> None:
    """An invalid secret value is not echoed in the error."""
    environ = {"STREAM_SERVICE_PROCESSOR__OPTIONS": json.dumps({"api_token": SECRET})}
    load_config(environ=environ)  # valid: any table
    with pytest.raises(ConfigError) as info:
        load_config(environ={}, flags={"kafka.sasl_password": 12345})
    assert str(info.value) == (
        "invalid setting kafka.sasl_password = *** (from flag --set kafka.sasl_password): "
        "expected a string, or none"
    )


def run_config_command(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="stream-service")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["config", *argv])
    code: int = args.handler(args)
    return code


@pytest.mark.usefixtures("clean_environ")
@pytest.mark.parametrize("argv", [pytest.param([], id="toml"), pytest.param(["--json"], id="json")])
def test_config_command_hides_secrets(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stream-service config` output, TOML or JSON, never contains a secret."""
    monkeypatch.setenv("STREAM_SERVICE_KAFKA__SASL_PASSWORD", SECRET)
    monkeypatch.setenv("STREAM_SERVICE_PROCESSOR__OPTIONS", json.dumps({"token": SECRET}))
    code = run_config_command(*argv, "--set", f"kafka.ssl_password={SECRET}")
    out = capsys.readouterr().out
    assert code == 0
    assert SECRET not in out
    assert "***" in out


@pytest.mark.usefixtures("clean_environ")
def test_config_command_toml_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The TOML that `stream-service config` prints loads back into the same configuration."""
    monkeypatch.setenv("STREAM_SERVICE_LIMITER__TENANTS", '{"acme": {"rate": 5}, "b c": {"burst": 2}}')
    monkeypatch.setenv("STREAM_SERVICE_OBSERVABILITY__METRICS_PORT", "")
    monkeypatch.setenv("STREAM_SERVICE_PROCESSOR__OPTIONS", '{"path": "/m", "n": [1, 2.5], "on": true}')
    assert run_config_command("--input-topic", 'in "quoted"', "--set", "batch.max_size=600") == 0
    printed = capsys.readouterr().out
    assert "# flag --input-topic" in printed
    assert "# env STREAM_SERVICE_LIMITER__TENANTS" in printed
    path = write_toml(tmp_path, printed)
    tomllib.loads(printed)
    expected = config_from_args(
        parse_args("--input-topic", 'in "quoted"', "--set", "batch.max_size=600"), environ=dict(os.environ)
    )
    assert load_config(file=path, environ={}) == expected


@pytest.mark.usefixtures("clean_environ")
def test_config_command_reports_invalid_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An invalid configuration makes `stream-service config` exit 2 with the one-line error."""
    monkeypatch.setenv("STREAM_SERVICE_BATCH__MAX_SIZE", "-3")
    assert run_config_command() == 2
    assert capsys.readouterr().err == (
        "stream-service: invalid setting batch.max_size = -3 (from env STREAM_SERVICE_BATCH__MAX_SIZE): "
        "expected an integer > 0\n"
    )


# ------------------------------------------------------------------- http processor fallbacks


@pytest.mark.parametrize(
    ("environ", "key", "source"),
    [
        pytest.param(
            {"STREAM_SERVICE_PROCESSOR__HTTP__API_KEY": "explicit", "STREAM_SERVICE_HTTP_API_KEY": "named"},
            "explicit",
            "env STREAM_SERVICE_PROCESSOR__HTTP__API_KEY",
            id="the setting wins over everything",
        ),
        pytest.param(
            {"STREAM_SERVICE_HTTP_API_KEY": "named", "OPENAI_API_KEY": "openai"},
            "named",
            "env STREAM_SERVICE_HTTP_API_KEY",
            id="api_key_env wins over OPENAI_API_KEY",
        ),
        pytest.param(
            {"STREAM_SERVICE_HTTP_API_KEY": " \n", "OPENAI_API_KEY": "openai"},
            "openai",
            "env OPENAI_API_KEY",
            id="a blank api_key_env falls through",
        ),
        pytest.param(
            {"OPENAI_API_KEY": "sk-abc\n"}, "sk-abc", "env OPENAI_API_KEY", id="OPENAI_API_KEY, stripped"
        ),
        pytest.param({}, None, None, id="no key anywhere"),
    ],
)
def test_api_key_precedence(environ: dict[str, str], key: str | None, source: str | None) -> None:
    """api_key: the setting > api_key_file > $api_key_env > $OPENAI_API_KEY, stripped of whitespace."""
    config, sources = load_config_with_sources(environ=environ)
    assert config.processor.http.api_key == key
    assert sources.get("processor.http.api_key") == source


def test_api_key_file_wins_over_openai_api_key_and_is_stripped(tmp_path: Path) -> None:
    """A key file ending in a newline gives the key without it, ahead of OPENAI_API_KEY."""
    key_file = tmp_path / "key"
    key_file.write_text("  sk-from-file\r\n")
    environ = {"STREAM_SERVICE_PROCESSOR__HTTP__API_KEY_FILE": str(key_file), "OPENAI_API_KEY": "openai"}
    assert load_config(environ=environ).processor.http.api_key == "sk-from-file"


def test_empty_api_key_file_is_an_error(tmp_path: Path) -> None:
    """An api_key_file holding only whitespace is an error (a secret that was not mounted), not no key."""
    key_file = tmp_path / "key"
    key_file.write_text("\n")
    assert config_error(environ={"STREAM_SERVICE_PROCESSOR__HTTP__API_KEY_FILE": str(key_file)}) == (
        f"invalid setting processor.http.api_key_file = {key_file} "
        "(from env STREAM_SERVICE_PROCESSOR__HTTP__API_KEY_FILE): "
        "expected a file holding the API key (it is empty)"
    )


def test_openai_base_url_is_a_fallback() -> None:
    """OPENAI_BASE_URL sets base_url when no source does; the setting itself wins over it."""
    config, sources = load_config_with_sources(environ={"OPENAI_BASE_URL": "https://api.example.com/v1\n"})
    assert config.processor.http.base_url == "https://api.example.com/v1"
    assert sources["processor.http.base_url"] == "env OPENAI_BASE_URL"
    environ = {
        "OPENAI_BASE_URL": "https://api.example.com/v1",
        "STREAM_SERVICE_PROCESSOR__HTTP__BASE_URL": "http://m/v1",
    }
    assert load_config(environ=environ).processor.http.base_url == "http://m/v1"


HTTPS_BASE = {"STREAM_SERVICE_PROCESSOR__HTTP__BASE_URL": "https://api.example.com:443/v1"}


@pytest.mark.parametrize(
    ("environ", "proxy", "source"),
    [
        pytest.param({"HTTPS_PROXY": "http://p:3128"}, "http://p:3128", "env HTTPS_PROXY", id="HTTPS_PROXY"),
        pytest.param(
            {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:2"},
            "http://lower:1",
            "env https_proxy",
            id="lower-case name first",
        ),
        pytest.param({"HTTP_PROXY": "http://p:3128"}, None, None, id="HTTP_PROXY is not for https"),
        pytest.param({"ALL_PROXY": "http://all:1"}, "http://all:1", "env ALL_PROXY", id="ALL_PROXY fallback"),
        pytest.param(
            {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "localhost,.example.com"},
            None,
            None,
            id="NO_PROXY suffix",
        ),
        pytest.param(
            {"HTTPS_PROXY": "http://p:3128", "no_proxy": "api.example.com:443"},
            None,
            None,
            id="NO_PROXY host:port",
        ),
        pytest.param({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "*"}, None, None, id="NO_PROXY *"),
        pytest.param(
            {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "ample.com,other.example.com"},
            "http://p:3128",
            "env HTTPS_PROXY",
            id="NO_PROXY matches whole labels only",
        ),
        pytest.param(
            {"HTTPS_PROXY": "http://p:3128", "STREAM_SERVICE_PROCESSOR__HTTP__PROXY": "http://mine:8"},
            "http://mine:8",
            "env STREAM_SERVICE_PROCESSOR__HTTP__PROXY",
            id="the setting wins",
        ),
        pytest.param(
            {"HTTPS_PROXY": "http://p:3128", "STREAM_SERVICE_PROCESSOR__HTTP__PROXY": ""},
            None,
            "env STREAM_SERVICE_PROCESSOR__HTTP__PROXY",
            id="an empty setting turns the variables off",
        ),
    ],
)
def test_proxy_from_conventional_variables(
    environ: dict[str, str], proxy: str | None, source: str | None
) -> None:
    """An unset processor.http.proxy comes from the scheme's proxy variable unless NO_PROXY names the host."""
    config, sources = load_config_with_sources(environ={**HTTPS_BASE, **environ})
    assert config.processor.http.proxy == proxy
    assert sources.get("processor.http.proxy") == source


def test_http_endpoint_uses_http_proxy() -> None:
    """An http:// base_url takes HTTP_PROXY, not HTTPS_PROXY."""
    environ = {
        "HTTP_PROXY": "http://plain:1",
        "HTTPS_PROXY": "http://tls:2",
        "STREAM_SERVICE_PROCESSOR__HTTP__BASE_URL": "http://model.internal:8000/v1",
    }
    assert load_config(environ=environ).processor.http.proxy == "http://plain:1"


@pytest.mark.parametrize(
    "base_url",
    [
        pytest.param("http://127.0.0.1:8000/v1", id="127.0.0.1 (the default)"),
        pytest.param("http://127.8.9.10/v1", id="127/8"),
        pytest.param("http://[::1]:8000/v1", id="::1"),
        pytest.param("http://localhost:8000/v1", id="localhost"),
        pytest.param("http://vllm.localhost/v1", id="*.localhost"),
    ],
)
def test_loopback_endpoint_takes_no_proxy_from_variables(base_url: str) -> None:
    """A loopback endpoint never goes through HTTP_PROXY or ALL_PROXY: no proxy can reach it."""
    environ = {"HTTP_PROXY": "http://p:1", "ALL_PROXY": "http://p:2"}
    environ["STREAM_SERVICE_PROCESSOR__HTTP__BASE_URL"] = base_url
    assert load_config(environ=environ).processor.http.proxy is None


def test_proxy_credentials_are_redacted() -> None:
    """A proxy URL's user:password is usable but shown as *** by repr() and redacted()."""
    config = load_config(environ={"STREAM_SERVICE_PROCESSOR__HTTP__PROXY": f"http://svc:{SECRET}@proxy:3128"})
    assert config.processor.http.proxy == f"http://svc:{SECRET}@proxy:3128"
    assert SECRET not in repr(config) and "http://***@proxy:3128" in repr(config.processor.http)
    assert redacted(config)["processor"]["http"]["proxy"] == "http://***@proxy:3128"


@pytest.mark.parametrize(
    ("kwargs", "source"),
    [
        pytest.param({"file": "toml"}, "file", id="file"),
        pytest.param({"environ": {"STREAM_SERVICE_PROCESSOR__HTTP__MAX_RETRIES": "3"}}, "env", id="env"),
        pytest.param({"flags": {"processor.http.max_retries": "3"}}, "flag", id="flag"),
    ],
)
def test_removed_max_retries_points_at_retry_max_attempts(
    kwargs: dict[str, object], source: str, tmp_path: Path
) -> None:
    """processor.http.max_retries, from any source, fails with a line saying to set retry.max_attempts."""
    if kwargs.get("file") == "toml":
        kwargs = {"file": write_toml(tmp_path, "[processor.http]\nmax_retries = 3\n"), "environ": {}}
    message = config_error(**{"environ": {}, **kwargs})
    assert message.startswith(f"setting processor.http.max_retries (from {source}")
    assert "was removed" in message and "set retry.max_attempts instead" in message


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param(
            {"STREAM_SERVICE_PROCESSOR__HTTP__TIMEOUT_S": "60"},
            "invalid setting processor.http.timeout_s = 60.0 "
            "(from env STREAM_SERVICE_PROCESSOR__HTTP__TIMEOUT_S): "
            "expected a value <= executor.request_timeout_s (30.0, from default)",
            id="longer than the engine allows",
        ),
        pytest.param({"STREAM_SERVICE_PROCESSOR__HTTP__TIMEOUT_S": "30"}, None, id="equal is fine"),
        pytest.param({}, None, id="unset: the engine's timeout bounds it"),
        pytest.param(
            {"STREAM_SERVICE_PROCESSOR__HTTP__TIMEOUT_S": "60", "STREAM_SERVICE_PROCESSOR__NAME": "echo"},
            None,
            id="not checked for another processor",
        ),
    ],
)
def test_http_timeout_fits_in_executor_timeout(environ: dict[str, str], message: str | None) -> None:
    """processor.http.timeout_s, when set for the http processor, is at most executor.request_timeout_s."""
    environ = {"STREAM_SERVICE_PROCESSOR__NAME": "http", **environ}
    if message is None:
        load_config(environ=environ)
    else:
        assert config_error(environ=environ) == message


# ------------------------------------------------------------------------------------ reference


def test_reference_documents_every_setting() -> None:
    """docs/configuration.md has one row per setting whose generated cells match the code."""
    rows = {}
    for line in DOCS.read_text().splitlines():
        if match := re.match(r"\| `([a-z0-9_.]+)` \|", line):
            assert match[1] not in rows, f"{match[1]} is documented twice"
            rows[match[1]] = line
    missing = [reference_row(key) + " MEANING |" for key in SETTINGS if key not in rows]
    assert not missing, "add these rows to docs/configuration.md:\n" + "\n".join(missing)
    assert not set(rows) - set(SETTINGS), (
        f"documented settings that do not exist: {set(rows) - set(SETTINGS)}"
    )
    for key, line in rows.items():
        expected = reference_row(key)
        assert line.startswith(expected + " "), f"update the row of {key} to start with:\n{expected}"
        assert line.removeprefix(expected).strip(" |"), f"the row of {key} has no meaning"
