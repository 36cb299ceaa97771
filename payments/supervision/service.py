"""Fund supervision: a daily set-based scan raises alerts for operators, who close each with a reason.

The scan runs in one transaction: the bank-account hashes are brought up to date first (decrypting
only the accounts that changed since the last scan), then each kind of finding is one statement into
a temporary table, and the alerts are upserted from it, so the same finding stays one alert.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass

import asyncpg

from core.errors import NotFound
from core.principal import Principal
from infra import audit
from infra.crypto import FieldCipher
from infra.db import unit_of_work
from payments.disbursement.service import ACCOUNT_CONTEXT
from payments.supervision import repository as repo
from payments.supervision import rules
from persons.service import account_hash

SCAN_JOB = "supervision.scan"
SCAN_ACTOR = "system:supervision"
HASH_BATCH = 10_000
NO_ALERT = NotFound("alert_not_found")


@dataclass(frozen=True)
class ScanResult:
    id: uuid.UUID
    found: dict[str, int]  # findings per kind this scan
    raised: dict[str, int]  # new alerts per kind
    reopened: dict[str, int]  # closed alerts opened again per kind
    accounts_hashed: int


class SupervisionService:
    def __init__(
        self, pool: asyncpg.Pool, cipher: FieldCipher, lookup_key: bytes, thresholds: rules.Thresholds
    ) -> None:
        self._pool = pool
        self._cipher = cipher
        self._lookup_key = lookup_key
        self._thresholds = thresholds

    async def scan(self, actor: str) -> ScanResult:
        hashed = await self._refresh_account_hashes()
        t = self._thresholds
        async with unit_of_work(self._pool) as uow:
            previous, now = await repo.start_scan(uow)
            since, until = rules.face_window(previous, now, t)
            found = {
                rules.SHARED_ACCOUNT: await repo.find(uow, repo.SHARED_ACCOUNT_SQL, t.account_min_persons),
                rules.SHARED_FACE: await repo.find(uow, repo.SHARED_FACE_SQL, since, until, t.face_distance),
                rules.SHARED_DEVICE: await repo.find(
                    uow, repo.SHARED_DEVICE_SQL, t.device_window_days, t.device_min_persons
                ),
                rules.AFTER_DEATH: await repo.find(uow, repo.AFTER_DEATH_SQL),
                rules.NO_LIFE_EVIDENCE: await repo.find_no_life_evidence(uow, t.evidence_max_age_months),
            }
            reopened_rows, upserted = await repo.upsert(uow)
            raised = Counter(row["kind"] for row in upserted if row["raised"])
            reopened = Counter(row["kind"] for row in reopened_rows)
            await audit.record_many(
                uow,
                actor,
                "supervision.alert_raised",
                [(f"alert:{row['id']}", {"kind": row["kind"]}) for row in upserted if row["raised"]],
            )
            await audit.record_many(
                uow,
                actor,
                "supervision.alert_reopened",
                [(f"alert:{row['id']}", {"kind": row["kind"]}) for row in reopened_rows],
            )
            counts = {"found": found, "raised": dict(raised), "reopened": dict(reopened), "accounts_hashed": hashed}
            scan_id = await repo.finish_scan(uow, actor, until, json.dumps(counts))
            await audit.record(uow, actor, "supervision.scanned", f"supervision_scan:{scan_id}", counts)
        return ScanResult(scan_id, found, dict(raised), dict(reopened), hashed)

    async def _refresh_account_hashes(self) -> int:
        """Hash every account that changed since the last scan (all of them the first time), in batches."""
        done = 0
        while rows := await repo.stale_account_hashes(self._pool, HASH_BATCH):
            hashes = [
                account_hash(self._lookup_key, self._cipher.decrypt_text(row["bank_account_enc"], ACCOUNT_CONTEXT))
                for row in rows
            ]
            await repo.save_account_hashes(
                self._pool, [row["person_id"] for row in rows], [row["bank_account_enc"] for row in rows], hashes
            )
            done += len(rows)
        return done

    async def alerts(
        self, kind: str | None, state: str | None, before: uuid.UUID | None, limit: int
    ) -> list[asyncpg.Record]:
        return await repo.alerts(self._pool, kind, state, before, limit)

    async def alert(self, alert_id: uuid.UUID) -> asyncpg.Record:
        row = await repo.alert(self._pool, alert_id)
        if row is None:
            raise NO_ALERT
        return row

    async def close(self, principal: Principal, alert_id: uuid.UUID, reason: str) -> asyncpg.Record:
        async with unit_of_work(self._pool) as uow:
            row = await repo.lock_alert(uow, alert_id)
            if row is None:
                raise NO_ALERT
            why = rules.closing_reason(row["state"], reason)
            await repo.close_alert(uow, alert_id, principal.actor, why)
            await audit.record(
                uow,
                principal.actor,
                "supervision.alert_closed",
                f"alert:{alert_id}",
                {"kind": row["kind"], "reason": why, "persons": [str(p) for p in row["person_ids"]]},
            )
        return await self.alert(alert_id)
