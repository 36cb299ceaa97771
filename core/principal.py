"""Who is calling: resolved once per request from the bearer credential."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from core.errors import Forbidden

CARDHOLDER = "cardholder"
OPERATOR = "operator"
AUDITOR = "auditor"
ADMIN = "admin"
TERMINAL = "terminal"


@dataclass(frozen=True)
class Principal:
    role: str
    subject_id: uuid.UUID  # account, operator or terminal id
    session_id: uuid.UUID | None = None
    person_id: uuid.UUID | None = None
    phone: str | None = None
    device_id: str | None = None
    merchant: str | None = None
    username: str | None = None  # staff: named in the audit rows of what they look at and decide

    @property
    def linked_person(self) -> uuid.UUID:
        """The person this cardholder proved to be (by activating the card); 403 until then."""
        if self.person_id is None:
            raise Forbidden("identity_not_linked")
        return self.person_id

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        kind = "account" if self.role == CARDHOLDER else self.role
        return f"{kind}:{self.subject_id}"

    @property
    def named(self) -> dict[str, str]:
        """The staff member's username, for an audit row's details: an auditor reads names, not ids."""
        return {"operator": self.username} if self.username else {}
