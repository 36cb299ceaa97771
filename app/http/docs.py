"""The OpenAPI document at /schema/openapi.json, and the Swagger UI beside it when development asks.

The UI runs offline: its scripts and styles come from the `swagger-ui-py` wheel (Swagger UI 5, which
reads OpenAPI 3.1), served from /schema/assets, never from a CDN. The wheel is a locked dependency, so
`uv sync` brings the assets and nothing is vendored into the repository.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from litestar.config.app import AppConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins import InitPlugin, ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute
from litestar.static_files import create_static_files_router

from app.http.openapi import document_route
from app.http.system.headers import DOCS_PATH

ASSETS_PATH = DOCS_PATH + "/assets"
SWAGGER_UI_PACKAGE = "swagger_ui"  # the import name of the `swagger-ui-py` distribution


def swagger_ui_assets() -> Path:
    """The folder of Swagger UI's built files inside the installed wheel (found without importing it:
    its Python side is for other frameworks)."""
    spec = importlib.util.find_spec(SWAGGER_UI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("API_DOCS_UI=1 needs the swagger-ui-py package (uv sync installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _swagger_ui() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{ASSETS_PATH}/favicon-32x32.png'>",
    )


class ApiDocs(InitPlugin, ReceiveRoutePlugin):
    """The document's configuration, and every route's refusals added as the app registers it."""

    def __init__(self, *, ui: bool) -> None:
        self.ui = ui

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        render: list[OpenAPIRenderPlugin] = [JsonRenderPlugin()]
        if self.ui:
            # The first plugin is also served at /schema itself.
            render.insert(0, _swagger_ui())
            app_config.route_handlers.append(
                create_static_files_router(
                    ASSETS_PATH, directories=[swagger_ui_assets()], include_in_schema=False, name="docs-assets"
                )
            )
        app_config.openapi_config = OpenAPIConfig(
            title="Social security card and pension certification API",
            version="1.0.0",
            description="Refusals are RFC 9457 problem+json (`ProblemDetails`): branch on `code`; `detail` is "
            "in the caller's language (Accept-Language). See docs/api.md.",
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An access token (at.…) for people and operators, an API key (tk_…) for terminals",
                    )
                }
            ),
            path=DOCS_PATH,
            render_plugins=render,
        )
        return app_config

    def receive_route(self, route: BaseRoute) -> None:
        if isinstance(route, HTTPRoute):
            document_route(route)
