"""The app factory: `granian --factory app.asgi:create_app`."""

from __future__ import annotations

from litestar import Litestar

from app.http.docs import ApiDocs
from app.plugin import SocialCardPlugin
from infra.config import Settings, load_settings
from infra.logging import configure_logging


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    # The body limit is read from the constructor only (a plugin's AppConfig value is ignored).
    # No logging config of Litestar's: its default puts plain-text handlers on the root logger, over
    # the masked JSON logging configured above (errors are logged by core.errors, through it).
    return Litestar(
        plugins=[SocialCardPlugin(settings), ApiDocs(ui=settings.api_docs_ui)],
        request_max_body_size=settings.max_request_body_bytes,
        debug=False,
        logging_config=None,
    )
