"""FCM settings: validated at start, passed on to child processes, and choosing the push channel."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from infra.config import SettingsError, load_settings, settings_env
from notifications.push import FcmPush, LogPush, push_channel

KEY_NAMES = ("TOKEN_SIGNING_KEY", "QR_SIGNING_KEY", "DATA_ENCRYPTION_KEY", "LOOKUP_HASH_KEY", "AUDIT_CHAIN_KEY")
LOCAL_URL = "http://127.0.0.1:8790/v1/projects/{0}/messages:send"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": "postgresql://u@h/db",
        "S3_ENDPOINT_URL": "http://127.0.0.1:1",
        "VAR_DIR": str(tmp_path),
        "SOCIALCARD_ENV": "test",
        **{name: base64.b64encode(bytes([i]) * 32).decode() for i, name in enumerate(KEY_NAMES, 1)},
    }


@pytest.fixture
def service_account(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = tmp_path / "service-account.json"
    account = {
        "type": "service_account",
        "project_id": "socialcard-prod",
        "private_key_id": "k1",
        "private_key": pem.decode(),
        "client_email": "push@socialcard-prod.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path.write_text(json.dumps(account))
    return path


def test_no_fcm_settings_mean_the_log_channel(env: dict[str, str]) -> None:
    settings = load_settings(env)
    assert (settings.fcm_project_id, settings.fcm_credentials_file, settings.fcm_url) == (None, None, None)
    assert isinstance(push_channel(settings), LogPush)
    assert not any(name.startswith("FCM_") for name in settings_env(settings))


def test_a_local_server_needs_a_project(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="FCM_PROJECT_ID is required"):
        load_settings(env | {"FCM_URL": LOCAL_URL})


def test_bad_url_and_missing_credentials_file_are_reported_together(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env | {"FCM_URL": "fcm.local:8790", "FCM_CREDENTIALS_FILE": str(tmp_path / "missing.json")})
    assert "FCM_URL must start with http:// or https://" in str(info.value)
    assert "FCM_CREDENTIALS_FILE must be a service-account JSON file" in str(info.value)


async def test_local_server_settings_survive_a_child_process(env: dict[str, str]) -> None:
    settings = load_settings(env | {"FCM_URL": LOCAL_URL, "FCM_PROJECT_ID": "socialcard-dev"})
    again = load_settings(settings_env(settings))
    assert (again.fcm_url, again.fcm_project_id, again.fcm_credentials_file) == (LOCAL_URL, "socialcard-dev", None)
    channel = push_channel(again)
    assert isinstance(channel, FcmPush)
    assert channel._app.project_id == "socialcard-dev"
    await channel.aclose()


async def test_a_service_account_sends_to_fcm(env: dict[str, str], service_account: Path) -> None:
    settings = load_settings(env | {"FCM_CREDENTIALS_FILE": str(service_account)})
    assert settings.fcm_credentials_file == service_account  # tmp_path is absolute already
    assert settings_env(settings)["FCM_CREDENTIALS_FILE"] == str(service_account)
    channel = push_channel(settings)  # the project comes from the file; nothing is sent here
    assert isinstance(channel, FcmPush)
    assert channel._app.project_id == "socialcard-prod"  # read from the service account file
    await channel.aclose()
