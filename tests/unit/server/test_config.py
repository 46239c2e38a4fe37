"""Server settings: sources and their precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.server.config import ConfigError, ServerConfig


def test_defaults():
    config = ServerConfig.load({}, env={}, toml_path=None)
    assert (config.host, config.port, config.member_cap) == ("127.0.0.1", 8080, 1000)
    assert config.registration_open is True and config.idle_timeout == 60.0
    assert config.pending_ttl_days == 30


def test_precedence_cli_env_toml(tmp_path: Path):
    (tmp_path / "tidings.toml").write_text(
        "[server]\nport = 7000\nmember_cap = 50\nidle_timeout = 10\nlog_level = 'debug'\n"
    )
    env = {"TIDINGS_DATA": str(tmp_path), "TIDINGS_MEMBER_CAP": "20", "TIDINGS_PORT": "7001"}
    config = ServerConfig.load({"port": 7002, "host": None}, env=env)
    assert config.data_dir == tmp_path
    assert config.port == 7002  # CLI
    assert config.member_cap == 20  # environment over TOML
    assert config.idle_timeout == 10.0 and config.log_level == "debug"  # TOML
    assert config.host == "127.0.0.1"  # None on the CLI means "not given"


def test_explicit_toml_file_and_top_level_keys(tmp_path: Path):
    path = tmp_path / "elsewhere.toml"
    path.write_text("registration_open = false\ndata = '/srv/tidings'\n")
    config = ServerConfig.load({}, env={}, toml_path=path)
    assert config.registration_open is False and config.data_dir == Path("/srv/tidings")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TIDINGS_PORT": "eighty"}, "TIDINGS_PORT"),
        ({"TIDINGS_PORT": "70000"}, "port"),
        ({"TIDINGS_MEMBER_CAP": "1"}, "member_cap"),
        ({"TIDINGS_REGISTRATION_OPEN": "maybe"}, "registration_open"),
        ({"TIDINGS_IDLE_TIMEOUT": "-1"}, "idle_timeout"),
        ({"TIDINGS_LOG_LEVEL": "loud"}, "log_level"),
    ],
)
def test_bad_values_are_named(env, message):
    with pytest.raises(ConfigError, match=message):
        ServerConfig.load({}, env=env)


def test_unknown_toml_key_is_an_error(tmp_path: Path):
    path = tmp_path / "t.toml"
    path.write_text("[server]\nmember_kap = 3\n")
    with pytest.raises(ConfigError, match="member_kap"):
        ServerConfig.load({}, env={}, toml_path=path)
