"""The composition root's product: every service, built once per process around one pool.

The API's lifespan, every `socialcard` command and the tests open services here, so each service
is wired in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from auth.service import AuthService
from cards.service import CardService
from certification.assisted.service import AssistedService
from certification.evidence.service import EvidenceService
from certification.in_person.service import InPersonService
from certification.ladder import LadderReports
from certification.service import CertificationService
from infra import audit
from infra.config import Settings
from infra.crypto import FieldCipher
from infra.db import create_pool
from infra.storage import ObjectStorage
from notifications.service import NotificationService
from notifications.sms import SmsProvider, sms_provider
from payments.deaths.service import DeathRecords
from payments.disbursement.accounts import BankAccounts
from payments.disbursement.service import DisbursementService
from payments.ledger.service import MedicalAccountService
from payments.recovery.service import RecoveryService
from payments.supervision.rules import Thresholds
from payments.supervision.service import SupervisionService
from persons.service import PersonImporter
from review.lookup import ConsoleService
from review.service import ReviewService


@dataclass(frozen=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool
    storage: ObjectStorage
    auth: AuthService
    cards: CardService
    persons: PersonImporter
    certification: CertificationService
    evidence: EvidenceService
    in_person: InPersonService
    assisted: AssistedService
    ladder: LadderReports
    review: ReviewService
    console: ConsoleService
    medical: MedicalAccountService
    disbursements: DisbursementService
    bank_accounts: BankAccounts
    deaths: DeathRecords
    recovery: RecoveryService
    supervision: SupervisionService
    notifications: NotificationService
    sms: SmsProvider


def build_services(settings: Settings, pool: asyncpg.Pool, storage: ObjectStorage) -> Services:
    audit.use_key(settings.audit_chain_key)  # every service's audit.record keys the chain with it
    cipher = FieldCipher(settings.data_encryption_key)
    cards = CardService(pool, settings)
    sms = sms_provider(settings.sms_provider)
    certification = CertificationService(pool, storage, settings, cipher)
    disbursements = DisbursementService(pool, cipher, settings.pension_pay_day, settings.disbursement_batch)
    return Services(
        settings=settings,
        pool=pool,
        storage=storage,
        auth=AuthService(pool, settings, sms, cipher),
        cards=cards,
        persons=PersonImporter(pool, storage, cipher, settings.lookup_hash_key, settings.import_batch),
        certification=certification,
        evidence=EvidenceService(pool, settings),
        in_person=InPersonService(pool, settings),
        assisted=AssistedService(pool, settings, sms, certification),
        ladder=LadderReports(pool),
        review=ReviewService(pool, storage, settings),
        medical=MedicalAccountService(pool, settings, cards),
        disbursements=disbursements,
        bank_accounts=BankAccounts(pool, cipher, settings.lookup_hash_key),
        console=ConsoleService(pool, settings.lookup_hash_key, settings.audit_chain_key, disbursements),
        deaths=DeathRecords(pool, settings.lookup_hash_key),
        recovery=RecoveryService(pool, cipher),
        supervision=SupervisionService(
            pool, cipher, settings.lookup_hash_key, Thresholds(face_distance=settings.face_collision_distance)
        ),
        notifications=NotificationService(pool, settings.pension_pay_day),
        sms=sms,
    )


# Background work (a disbursement batch of 20,000 entitlements, an import, a sweep) runs statements
# far longer than a request's; it is bounded too, so a frozen database still ends in a retry.
BACKGROUND_STATEMENT_TIMEOUT_S = 600.0


@asynccontextmanager
async def open_services(
    settings: Settings, *, pool_max: int | None = None, background: bool = False
) -> AsyncIterator[Services]:
    """Services over a new pool, closed when the block ends. `background`: for the worker and the CLI,
    whose statements may run for minutes; otherwise a request's limits (DB_STATEMENT_TIMEOUT_S)."""
    pool = await create_pool(
        settings.database_url,
        min_size=min(settings.db_pool_min, pool_max or settings.db_pool_max),
        max_size=pool_max or settings.db_pool_max,
        acquire_timeout_s=BACKGROUND_STATEMENT_TIMEOUT_S if background else settings.db_acquire_timeout_s,
        statement_timeout_s=BACKGROUND_STATEMENT_TIMEOUT_S if background else settings.db_statement_timeout_s,
    )
    try:
        yield build_services(settings, pool, ObjectStorage(settings))
    finally:
        await pool.close()
