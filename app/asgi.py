"""The app factory: `granian --factory app.asgi:create_app`."""

from __future__ import annotations

from litestar import Litestar

from app.plugin import SocialCardPlugin
from infra.config import Settings, load_settings
from infra.logging import configure_logging


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    return Litestar(plugins=[SocialCardPlugin(settings)], debug=False)
