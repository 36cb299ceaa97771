"""The composition root's product: every service, built once per process around one pool."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from app.auth.service import AuthService
from app.cards.service import CardService
from infra.config import Settings
from infra.storage import ObjectStorage
from notifications.sms import sms_provider


@dataclass(frozen=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool
    storage: ObjectStorage
    auth: AuthService
    cards: CardService


def build_services(settings: Settings, pool: asyncpg.Pool, storage: ObjectStorage) -> Services:
    return Services(
        settings=settings,
        pool=pool,
        storage=storage,
        auth=AuthService(pool, settings, sms_provider(settings.sms_provider)),
        cards=CardService(pool, settings),
    )
