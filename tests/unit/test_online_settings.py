"""Service settings from environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.online_settings import ServiceSettings, SettingsError


def test_defaults_without_environment():
    settings = ServiceSettings.from_env({})
    assert settings == ServiceSettings()
    assert settings.api_key is None
    assert settings.max_accounts == 1000
    assert settings.max_body_bytes == 1_048_576
    assert settings.reload_seconds == 30.0


def test_values_from_environment_round_trip():
    env = {
        "PORTFOLIO_API_KEY": "k",
        "PORTFOLIO_MAX_ACCOUNTS": "10",
        "PORTFOLIO_MAX_BODY_BYTES": "2048",
        "PORTFOLIO_RELOAD_SECONDS": "1",
        "PORTFOLIO_SNAPSHOT": "/tmp/run",
        "PORTFOLIO_TOP_REASONS": "5",
        "PORTFOLIO_MODEL_SOURCE": "bento",
    }
    settings = ServiceSettings.from_env(env)
    assert settings.api_key == "k"
    assert settings.max_accounts == 10
    assert settings.snapshot_dir == Path("/tmp/run")
    assert settings.model_source == "bento"
    assert ServiceSettings.from_env(settings.to_env()) == settings


def test_api_key_is_not_in_the_repr():
    assert "s3cret" not in repr(ServiceSettings(api_key="s3cret"))


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PORTFOLIO_MAX_ACCOUNTS", "many", "PORTFOLIO_MAX_ACCOUNTS must be an integer"),
        ("PORTFOLIO_MAX_ACCOUNTS", "0", "PORTFOLIO_MAX_ACCOUNTS must be at least 1"),
        ("PORTFOLIO_RELOAD_SECONDS", "soon", "PORTFOLIO_RELOAD_SECONDS must be a number"),
        ("PORTFOLIO_MODEL_SOURCE", "s3", "PORTFOLIO_MODEL_SOURCE must be one of"),
    ],
)
def test_bad_values_name_the_variable(name, value, expected):
    with pytest.raises(SettingsError, match=expected):
        ServiceSettings.from_env({name: value})
