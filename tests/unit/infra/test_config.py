"""Settings loaded from an explicit environment mapping."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from infra.config import Settings, SettingsError, load_settings, settings_env

KEY_NAMES = ("TOKEN_SIGNING_KEY", "QR_SIGNING_KEY", "DATA_ENCRYPTION_KEY", "LOOKUP_HASH_KEY", "AUDIT_CHAIN_KEY")


def key(fill: int, size: int = 32) -> str:
    return base64.b64encode(bytes([fill]) * size).decode()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": "postgresql://u@h/db",
        "S3_ENDPOINT_URL": "http://127.0.0.1:1",
        "VAR_DIR": str(tmp_path),
        "SOCIALCARD_ENV": "test",
        **{name: key(i + 1) for i, name in enumerate(KEY_NAMES)},
    }


def problem_of(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    return str(info.value)


def test_full_env_loads(env: dict[str, str], tmp_path: Path) -> None:
    settings = load_settings(env)
    assert isinstance(settings, Settings)
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.migration_database_url == "postgresql://u@h/db"
    assert settings.s3_endpoint_url == "http://127.0.0.1:1"
    assert settings.var_dir == tmp_path.resolve()
    assert settings.token_signing_key == bytes([1]) * 32
    assert settings.qr_signing_key == bytes([2]) * 32
    assert settings.data_encryption_key == bytes([3]) * 32
    assert settings.lookup_hash_key == bytes([4]) * 32
    assert settings.audit_chain_key == bytes([5]) * 32
    assert settings.api_port == 8000
    assert settings.db_pool_min == 2
    assert settings.db_pool_max == 10
    assert settings.sms_provider == "dev"
    assert settings.s3_bucket == "socialcard"
    assert settings.log_level == "INFO"
    assert not (tmp_path / "dev-secrets.json").exists()  # explicit services: no dev secrets written


def test_explicit_values_are_used(env: dict[str, str]) -> None:
    env |= {
        "MIGRATION_DATABASE_URL": "postgresql://admin@h/db",
        "API_PORT": "9001",
        "API_WORKERS": "4",
        "DB_POOL_MIN": "5",
        "DB_POOL_MAX": "5",
        "SMS_PROVIDER": "log",
        "LOG_LEVEL": "debug",
        "S3_BUCKET": "cards",
    }
    settings = load_settings(env)
    assert settings.migration_database_url == "postgresql://admin@h/db"
    assert (settings.api_port, settings.api_workers, settings.db_pool_min, settings.db_pool_max) == (9001, 4, 5, 5)
    assert settings.sms_provider == "log"
    assert settings.log_level == "DEBUG"
    assert settings.s3_bucket == "cards"


def test_empty_numbers_use_defaults(env: dict[str, str]) -> None:
    env |= {"API_PORT": "", "DB_POOL_MAX": ""}
    settings = load_settings(env)
    assert settings.api_port == 8000
    assert settings.db_pool_max == 10


@pytest.mark.parametrize("name", KEY_NAMES)
def test_missing_key(env: dict[str, str], name: str) -> None:
    del env[name]
    assert name in problem_of(env)


@pytest.mark.parametrize("name", KEY_NAMES)
def test_empty_key(env: dict[str, str], name: str) -> None:
    env[name] = ""
    assert name in problem_of(env)


@pytest.mark.parametrize("name", KEY_NAMES)
@pytest.mark.parametrize("size", [16, 31, 33, 64])
def test_key_of_wrong_length(env: dict[str, str], name: str, size: int) -> None:
    env[name] = key(7, size)
    message = problem_of(env)
    assert name in message
    assert str(size) in message


@pytest.mark.parametrize("value", ["not base64!", "@@@@", "a"])
def test_key_not_base64(env: dict[str, str], value: str) -> None:
    env["QR_SIGNING_KEY"] = value
    assert "QR_SIGNING_KEY" in problem_of(env)


@pytest.mark.parametrize("value", ["eighty", "80.5", "0x50", "8000 tcp"])
def test_non_numeric_api_port(env: dict[str, str], value: str) -> None:
    env["API_PORT"] = value
    message = problem_of(env)
    assert "API_PORT" in message
    assert value in message


@pytest.mark.parametrize(
    ("name", "value"), [("API_PORT", "0"), ("API_PORT", "65536"), ("API_WORKERS", "65"), ("DB_POOL_MIN", "0")]
)
def test_number_out_of_range(env: dict[str, str], name: str, value: str) -> None:
    env[name] = value
    assert name in problem_of(env)


def test_pool_min_above_max(env: dict[str, str]) -> None:
    env |= {"DB_POOL_MIN": "20", "DB_POOL_MAX": "5"}
    message = problem_of(env)
    assert "DB_POOL_MIN" in message
    assert "DB_POOL_MAX" in message


@pytest.mark.parametrize("value", ["twilio", "", "DEV", "aliyun"])
def test_unknown_sms_provider(env: dict[str, str], value: str) -> None:
    env["SMS_PROVIDER"] = value
    assert "SMS_PROVIDER" in problem_of(env)


@pytest.mark.parametrize("url", ["mysql://u@h/db", "http://h/db", "h/db"])
def test_database_url_scheme(env: dict[str, str], url: str) -> None:
    env["DATABASE_URL"] = url
    assert "DATABASE_URL" in problem_of(env)


def test_postgres_scheme_alias_is_accepted(env: dict[str, str]) -> None:
    env["DATABASE_URL"] = "postgres://u@h/db"
    assert load_settings(env).database_url == "postgres://u@h/db"


def test_all_problems_are_listed_in_one_error(env: dict[str, str]) -> None:
    del env["TOKEN_SIGNING_KEY"]
    env |= {
        "QR_SIGNING_KEY": key(1, 16),
        "API_PORT": "http",
        "SMS_PROVIDER": "twilio",
        "DATABASE_URL": "mysql://u@h/db",
    }
    message = problem_of(env)
    for name in ("TOKEN_SIGNING_KEY", "QR_SIGNING_KEY", "API_PORT", "SMS_PROVIDER", "DATABASE_URL"):
        assert name in message
    assert message.count("\n  - ") == 5


def test_pool_problem_is_listed_alongside_other_problems(env: dict[str, str]) -> None:
    del env["LOOKUP_HASH_KEY"]
    env |= {"DB_POOL_MIN": "20", "DB_POOL_MAX": "5"}
    message = problem_of(env)
    assert "LOOKUP_HASH_KEY" in message
    assert "DB_POOL_MIN" in message


def test_certification_policy_and_thresholds(env: dict[str, str]) -> None:
    settings = load_settings(env)
    assert settings.challenge_actions == ("blink", "turn_left", "turn_right", "open_mouth")
    assert (settings.challenge_min_actions, settings.challenge_max_actions) == (2, 3)
    assert settings.media_retention_days == 30
    assisted = load_settings(
        {**env, "CHALLENGE_ACTIONS": "blink", "CHALLENGE_MIN_ACTIONS": "1", "CHALLENGE_MAX_ACTIONS": "1"}
    )
    assert assisted.challenge_actions == ("blink",)
    strict = load_settings({**env, "FACE_ACCEPT_DISTANCE": "0.415", "MEDIA_RETENTION_DAYS": "7"})
    assert (strict.face_accept_distance, strict.media_retention_days) == (0.415, 7)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"CHALLENGE_ACTIONS": "blink,wink"}, "CHALLENGE_ACTIONS must be distinct names"),
        ({"CHALLENGE_ACTIONS": "blink,blink"}, "CHALLENGE_ACTIONS must be distinct names"),
        ({"CHALLENGE_MIN_ACTIONS": "3", "CHALLENGE_MAX_ACTIONS": "2"}, "must not exceed CHALLENGE_MAX_ACTIONS"),
        ({"CHALLENGE_ACTIONS": "blink"}, "must not exceed the number of CHALLENGE_ACTIONS"),
        ({"FACE_ACCEPT_DISTANCE": "0.7"}, "FACE_ACCEPT_DISTANCE must not exceed FACE_REJECT_DISTANCE"),
        ({"FACE_REPLAY_DISTANCE": "near"}, "FACE_REPLAY_DISTANCE must be a number"),
        ({"MEDIA_RETENTION_DAYS": "0"}, "MEDIA_RETENTION_DAYS must be between 1 and 3650"),
    ],
)
def test_bad_certification_settings_are_named(env: dict[str, str], extra: dict[str, str], message: str) -> None:
    assert message in problem_of({**env, **extra})


def test_the_api_docs_ui_is_off_unless_development_turns_it_on(env: dict[str, str]) -> None:
    assert load_settings(env).api_docs_ui is False
    assert load_settings(env | {"API_DOCS_UI": ""}).api_docs_ui is False
    settings = load_settings(env | {"API_DOCS_UI": "1"})
    assert settings.api_docs_ui is True
    assert load_settings(settings_env(settings)).api_docs_ui is True
    assert "API_DOCS_UI" in problem_of(env | {"API_DOCS_UI": "yes"})
