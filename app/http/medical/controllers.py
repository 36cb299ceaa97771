from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.openapi.spec import Example
from litestar.params import Parameter

from app.http.auth.guards import requires
from app.http.cards.controllers import QR
from app.http.medical import schemas as s
from app.http.openapi import IDEMPOTENCY_KEY, NOT_LINKED, problems
from app.http.paging import Cursor, Limit
from app.http.schemas import BEARER, to_schema
from app.services import Services
from core.errors import BadRequest, Conflict, NotFound, PaymentRequired, Unprocessable
from core.principal import CARDHOLDER, TERMINAL, Principal
from payments.ledger import rules
from payments.ledger.service import Idempotency

IdempotencyKey = Annotated[
    str | None,
    Parameter(
        header=IDEMPOTENCY_KEY,
        examples=[Example(value="pos-17-20260307-000123")],
        description="required: 1-255 printable ASCII characters naming this request; a retry sends the same key "
        "and body and gets the first answer again (keys are kept 24 hours, per terminal)",
    ),
]


# What a request under an Idempotency-Key may meet: no key, the key reused for another body, or the
# first request with it still running (a replay gets the first answer, refusal included).
ONCE = (BadRequest("idempotency_key_required"), Unprocessable("idempotency_key_reused"), Conflict("request_in_flight"))


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

    @post(
        "/",
        status_code=201,
        summary="Charge the medical account behind a QR code (once per Idempotency-Key)",
        responses=problems(*ONCE, *QR, PaymentRequired("insufficient_balance")),
    )
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
        responses=problems(*ONCE, NotFound("charge_not_found"), Conflict("refund_exceeds_charge", refundable="12.50")),
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

    @get("/", summary="The medical personal account: balance and entries, newest first", responses=problems(NOT_LINKED))
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
