"""The pure rules behind the sign-in limits: who the client is, TOTP steps used once, window waits,
and their settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest

from auth.rules import client_key, seconds_to_next_hour, totp_step, wait_seconds
from infra.config import SettingsError, load_settings, settings_env

NOW = datetime(2026, 12, 4, 9, 41, 15, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("peer", "claimed", "client"),
    [
        ("203.0.113.7", None, "203.0.113.7"),
        ("10.0.0.2", "203.0.113.7", "203.0.113.7"),
        # X-Forwarded-For: the last address is the one the trusted proxy wrote; earlier ones are the caller's claim.
        ("10.0.0.2", "198.51.100.1, 203.0.113.7", "203.0.113.7"),
        ("10.0.0.2", "not an address", "10.0.0.2"),
        ("10.0.0.2", "", "10.0.0.2"),
        # One subscriber gets a /64: every address in it is one client.
        ("2001:db8:1:2:3:4:5:6", None, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", None, "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", None, "203.0.113.7"),
        ("testclient", None, "testclient"),  # an ASGI server that names its peer otherwise
        (None, None, "unknown"),
    ],
)
def test_client_key(peer: str | None, claimed: str | None, client: str) -> None:
    assert client_key(peer, claimed) == client


def test_a_totp_code_matches_its_step_or_a_neighbour_once() -> None:
    totp = pyotp.TOTP(pyotp.random_base32())
    step = totp.timecode(NOW)
    for offset in (-1, 0, 1):
        code = totp.generate_otp(step + offset)
        assert totp_step(totp.secret, code, NOW, None) == step + offset
        assert totp_step(totp.secret, code, NOW, step + offset) is None  # used already
        assert totp_step(totp.secret, code, NOW, step + offset - 1) == step + offset
    assert totp_step(totp.secret, totp.generate_otp(step + 2), NOW, None) is None  # too far ahead
    assert totp_step(totp.secret, totp.generate_otp(step - 2), NOW, None) is None
    # A later step used means every earlier one is spent, even if never used itself.
    assert totp_step(totp.secret, totp.generate_otp(step), NOW, step + 1) is None


def test_wait_seconds_in_a_sliding_window() -> None:
    assert wait_seconds([], 3, HOUR, NOW) is None
    sent = [NOW - timedelta(minutes=50), NOW - timedelta(minutes=20), NOW - timedelta(minutes=5)]
    assert wait_seconds(sent[1:], 3, HOUR, NOW) is None
    assert wait_seconds(sent, 3, HOUR, NOW) == 10 * 60  # the oldest leaves the window in 10 minutes
    assert wait_seconds(sent, 2, HOUR, NOW) == 40 * 60  # a lowered limit: the second oldest must go too
    assert wait_seconds([NOW - HOUR + timedelta(milliseconds=10)], 1, HOUR, NOW) == 1  # never 0


def test_seconds_to_next_hour() -> None:
    assert seconds_to_next_hour(NOW) == 18 * 60 + 45
    assert seconds_to_next_hour(NOW.replace(minute=0, second=0)) == 3600
    assert seconds_to_next_hour(NOW.replace(minute=59, second=59, microsecond=500_000)) == 1


# -- settings -------------------------------------------------------------------------------------------
@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
    return {
        "DATABASE_URL": "postgresql://u@h/db",
        "S3_ENDPOINT_URL": "http://127.0.0.1:1",
        "VAR_DIR": str(tmp_path),
        "SOCIALCARD_ENV": "test",
        **{
            name: key
            for name in (
                "TOKEN_SIGNING_KEY",
                "QR_SIGNING_KEY",
                "DATA_ENCRYPTION_KEY",
                "LOOKUP_HASH_KEY",
                "AUDIT_CHAIN_KEY",
            )
        },
    }


def test_sign_in_limit_defaults(env: dict[str, str]) -> None:
    settings = load_settings(env)
    assert settings.client_ip_header is None  # no proxy is trusted unless named
    assert (settings.otp_per_client_per_hour, settings.otp_total_per_hour) == (10, 10_000)
    assert settings.operator_failures_per_client_per_hour == 20


def test_sign_in_limits_are_read_and_passed_on(env: dict[str, str]) -> None:
    env |= {
        "CLIENT_IP_HEADER": "X-Forwarded-For",
        "OTP_PER_CLIENT_PER_HOUR": "30",
        "OTP_TOTAL_PER_HOUR": "500",
        "OPERATOR_FAILURES_PER_CLIENT_PER_HOUR": "8",
    }
    settings = load_settings(env)
    assert settings.client_ip_header == "x-forwarded-for"  # as ASGI spells header names
    assert (settings.otp_per_client_per_hour, settings.otp_total_per_hour) == (30, 500)
    assert settings.operator_failures_per_client_per_hour == 8
    assert load_settings({**env, **settings_env(settings)}) == settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CLIENT_IP_HEADER", "X Forwarded For"),
        ("CLIENT_IP_HEADER", "X-Real-IP:"),
        ("OTP_PER_CLIENT_PER_HOUR", "0"),
        ("OTP_TOTAL_PER_HOUR", "many"),
        ("OPERATOR_FAILURES_PER_CLIENT_PER_HOUR", "0"),
    ],
)
def test_bad_sign_in_limits_are_named(env: dict[str, str], name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({**env, name: value})
