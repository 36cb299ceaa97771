"""An administrator's correction of the bank account a pension is paid into.

The account is set (or the one on file confirmed, reopened after the bank returned a payment) in one
transaction with its audit entry and the person's notice. Nothing is paid here: the next disbursement
run pays again the returned payments the correction makes payable (rules.repay_due), so a correction
repeated or made twice pays nothing twice. Numbers appear only masked, in answers, logs and the audit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from core import national_id as nid
from core.errors import BadRequest, NotFound
from core.justification import stated
from core.records import normal_bank_account
from infra import audit
from infra.crypto import FieldCipher, lookup_hash, mask_account
from infra.db import unit_of_work
from notifications.outbox import publish_event
from payments.disbursement import repository as repo
from payments.disbursement.service import ACCOUNT_CONTEXT

NOTICE = "bank_account.set"


@dataclass(frozen=True)
class AccountSet:
    person_id: uuid.UUID
    national_id_masked: str
    bank_account_masked: str
    changed: bool  # a new number (False: the number on file, confirmed)
    returned_awaiting: int  # returned payments the next run looks at again
    returned_awaiting_fen: int


class BankAccounts:
    def __init__(self, pool: asyncpg.Pool, cipher: FieldCipher, lookup_key: bytes) -> None:
        self._pool = pool
        self._cipher = cipher
        self._lookup_key = lookup_key

    async def set_account(
        self, actor: str, national_id: str, account: str, reason: str, named: dict[str, str] | None = None
    ) -> AccountSet:
        """Set the pension's account to `account` (or confirm it, when it is the one on file)."""
        national_id = nid.normalise(national_id)
        if nid.validate(national_id) is not None:
            raise BadRequest("national_id_invalid")
        number = normal_bank_account(account)
        if number is None:
            raise BadRequest("bank_account_invalid")
        reason = stated(reason)
        async with unit_of_work(self._pool) as uow:
            row = await repo.entitlement_of(uow, lookup_hash(self._lookup_key, national_id))
            if row is None:
                raise NotFound("pension_not_found")
            person_id: uuid.UUID = row["person_id"]
            changed = self._cipher.decrypt_text(row["bank_account_enc"], ACCOUNT_CONTEXT) != number
            masked = mask_account(number)
            at = await repo.set_account(
                uow, person_id, self._cipher.encrypt_text(number, ACCOUNT_CONTEXT), masked, actor
            )
            awaiting = await repo.awaiting_repay(uow, person_id)
            # Told whoever set it: an account changed by someone else is how a pension is diverted.
            await publish_event(
                uow, NOTICE, person_id, {"account_masked": masked}, f"{NOTICE}:{person_id}:{at.isoformat()}"
            )
            await audit.record(
                uow,
                actor,
                "person.bank_account_set",
                f"person:{person_id}",
                {
                    "masked_national_id": row["national_id_masked"],
                    "account_before": row["bank_account_masked"],
                    "account": masked,
                    "changed": changed,
                    "reason": reason,
                    "returned_awaiting": awaiting["payments"],
                    **(named or {}),
                },
            )
        return AccountSet(
            person_id=person_id,
            national_id_masked=row["national_id_masked"],
            bank_account_masked=masked,
            changed=changed,
            returned_awaiting=awaiting["payments"],
            returned_awaiting_fen=awaiting["amount_fen"],
        )
