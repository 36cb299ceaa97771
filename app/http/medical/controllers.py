from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import Parameter

from app.http.auth.guards import requires
from app.http.medical import schemas as s
from app.http.paging import Cursor, Limit
from app.http.schemas import BEARER, to_schema
from app.services import Services
from core.errors import BadRequest
from core.principal import CARDHOLDER, TERMINAL, Principal
from payments.ledger import rules
from payments.ledger.service import Idempotency

IdempotencyKey = Annotated[
    str | None,
    Parameter(
        header="Idempotency-Key",
        description="required: 1-255 printable ASCII characters naming this request; a retry sends the same key "
        "and body and gets the first answer again (keys are kept 24 hours, per terminal)",
    ),
]


def _idempotency(request: Request[Principal, Any, Any], key: str | None, body: msgspec.Struct) -> Idempotency:
    # Checked here rather than by the parameter's type, so a missing key gets its own problem code.
    if key is None or not rules.valid_idempotency_key(key):
        raise BadRequest("idempotency_key_required")
    return Idempotency(key, rules.request_hash(request.method, request.url.path, msgspec.to_builtins(body)))


class TerminalChargeController(Controller):
    path = "/v1/terminal/charges"
    tags = ["medical account"]
    guards = [requires(TERMINAL)]
    security = BEARER

    @post("/", status_code=201, summary="Charge the medical account behind a QR code (once per Idempotency-Key)")
    async def charge(
        self,
        data: s.ChargeRequest,
        request: Request[Principal, Any, Any],
        services: Services,
        idempotency_key: IdempotencyKey = None,
    ) -> s.ChargeReceipt:
        receipt = await services.medical.charge(
            request.user,
            _idempotency(request, idempotency_key, data),
            data.qr_token,
            data.amount_fen,
            data.description,
        )
        return to_schema(s.ChargeReceipt, receipt)

    @post(
        "/{charge_id:uuid}/refunds",
        status_code=201,
        summary="Refund part or all of a charge, by a terminal of the same merchant (once per Idempotency-Key)",
    )
    async def refund(
        self,
        charge_id: uuid.UUID,
        data: s.RefundRequest,
        request: Request[Principal, Any, Any],
        services: Services,
        idempotency_key: IdempotencyKey = None,
    ) -> s.RefundReceipt:
        receipt = await services.medical.refund(
            request.user, _idempotency(request, idempotency_key, data), charge_id, data.amount_fen
        )
        return to_schema(s.RefundReceipt, receipt)


class MedicalAccountController(Controller):
    path = "/v1/account"
    tags = ["medical account"]
    guards = [requires(CARDHOLDER)]
    security = BEARER

    @get("/", summary="The medical personal account: balance and entries, newest first")
    async def account(
        self,
        request: Request[Principal, Any, Any],
        services: Services,
        cursor: Cursor = None,
        limit: Limit = 20,
    ) -> s.MedicalAccount:
        statement = await services.medical.statement(request.user, cursor, limit)
        return s.MedicalAccount(
            balance_fen=statement.balance_fen,
            entries=[to_schema(s.AccountEntry, row) for row in statement.entries],
            next_cursor=statement.next_cursor,
        )
