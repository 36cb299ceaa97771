"""Names config and embedded both use (a leaf: it imports nothing of infra)."""

from __future__ import annotations

APP_ROLE = "socialcard_app"
APP_DATABASE = "socialcard"


class SettingsError(Exception):
    """A configuration value is missing or invalid; the message says which and how to fix it."""
