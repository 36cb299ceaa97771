"""The composition root: one plugin wires settings, the pool, storage and services into the app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from litestar import Litestar, Request, Response
from litestar.config.app import AppConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.plugins import InitPluginProtocol
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from app.console.controllers import TEMPLATES, console_router, error_page
from app.console.session import PATH as CONSOLE_PATH
from app.console.session import console_headers
from app.http.auth.controllers import AuthController
from app.http.auth.middleware import bearer_auth_middleware
from app.http.bodies import StrictRequest
from app.http.cards.controllers import CardController, TerminalQrController
from app.http.certification.controllers import CertificationController, ConsentController
from app.http.deaths.controllers import DeathReversalController
from app.http.evidence.controllers import EvidenceAdminController, EvidenceController
from app.http.family.controllers import FamilyController, RelativeLinkAdminController
from app.http.in_person.controllers import AppealController, InPersonAdminController, InPersonController
from app.http.medical.controllers import MedicalAccountController, TerminalChargeController
from app.http.notifications.controllers import DeviceController, InboxController, NotificationAdminController
from app.http.payments.controllers import (
    BankAccountController,
    DisbursementController,
    PaymentController,
    ReturnedPaymentController,
)
from app.http.problems import problem_json
from app.http.recovery.controllers import RecoveryController
from app.http.review.controllers import ReviewController
from app.http.supervision.controllers import AlertController
from app.http.system.controllers import HealthController, MetricsController
from app.http.system.headers import security_headers
from app.http.system.observability import request_id_middleware
from app.services import Services, open_services
from infra.config import Settings


class SocialCardPlugin(InitPluginProtocol):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        async with open_services(self.settings) as services:
            app.state.services = services
            yield

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.extend(
            [
                HealthController,
                MetricsController,
                AuthController,
                CardController,
                TerminalQrController,
                ConsentController,
                CertificationController,
                ReviewController,
                TerminalChargeController,
                MedicalAccountController,
                PaymentController,
                DisbursementController,
                BankAccountController,
                ReturnedPaymentController,
                DeathReversalController,
                RecoveryController,
                AlertController,
                EvidenceAdminController,
                EvidenceController,
                InPersonController,
                AppealController,
                InPersonAdminController,
                FamilyController,
                RelativeLinkAdminController,
                DeviceController,
                InboxController,
                NotificationAdminController,
                console_router(),
            ]
        )
        app_config.template_config = TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine)
        app_config.lifespan.append(self.lifespan)
        app_config.dependencies["services"] = Provide(_services, sync_to_thread=False)
        app_config.exception_handlers[Exception] = _render_error
        app_config.middleware[:0] = [
            request_id_middleware,
            bearer_auth_middleware,
        ]
        app_config.request_class = StrictRequest
        app_config.before_send.append(
            security_headers(
                console_headers(_origin(self.settings.s3_endpoint_url)),
                console_path=CONSOLE_PATH,
                docs_ui=self.settings.api_docs_ui,
            )
        )
        return app_config


def _render_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Errors are mapped once (core.errors.classify) and shown as the caller reads them: a page in the
    console's browser, problem+json everywhere else."""
    path = request.url.path
    if path == CONSOLE_PATH or path.startswith(CONSOLE_PATH + "/"):
        return error_page(request, exc)
    return problem_json(request, exc)


def _origin(url: str | None) -> str | None:
    """Where presigned image links point (the console's pages may show images from there)."""
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _services(state: State) -> Services:
    services: Services = state.services
    return services
