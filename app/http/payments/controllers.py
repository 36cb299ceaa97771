"""Pension payments over HTTP: the retiree's history and statements; runs and bank files for staff."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, get, post
from litestar.params import Parameter
from litestar.response import Stream
from litestar.status_codes import HTTP_202_ACCEPTED

from app.http.auth.guards import requires
from app.http.locale import request_locale
from app.http.openapi import BODY_TOO_LARGE, NOT_LINKED, csv_download, csv_upload, problems
from app.http.paging import Cursor, Limit
from app.http.payments import schemas as s
from app.http.schemas import BEARER, STAFF_REASON_REFUSALS, to_schema
from app.services import Services
from core.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from core.paging import after, page
from core.principal import ADMIN, CARDHOLDER, OPERATOR, Principal
from core.text import text
from payments.disbursement.bankfile import ORDER_HEADER, RETURN_HEADER
from payments.disbursement.rules import parse_period, parse_year

BANK_RETURNS_MAX_BYTES = 256 * 1024 * 1024
NO_RUN = NotFound("disbursement_not_found")
RUNNING = Conflict("disbursement_running")
NOT_APPROVED = Conflict("disbursement_not_approved")


def _month(day: date) -> str:
    return f"{day:%Y-%m}"


def _reason(code: str, locale: str) -> s.Reason:
    return s.Reason(code=code, text=text(f"withheld.{code}", locale))


def _payment(row: asyncpg.Record, locale: str) -> s.Payment:
    return to_schema(
        s.Payment,
        row,
        period=_month(row["period"]),
        covers=[_month(m) for m in row["covers"]] if row["covers"] is not None else None,
        withheld_reason=_reason(row["withheld_reason"], locale) if row["withheld_reason"] else None,
    )


class PaymentController(Controller):
    path = "/v1/payments"
    tags = ["payments"]
    guards = [requires(CARDHOLDER)]
    security = BEARER

    @get("/", summary="My pension payments, newest first", responses=problems(NOT_LINKED))
    async def list_payments(
        self,
        request: Request[Principal, Any, Any],
        services: Services,
        cursor: Cursor = None,
        limit: Limit = 20,
    ) -> s.PaymentPage:
        start = after(cursor, date, str, uuid.UUID)
        rows = await services.disbursements.payments(request.user.linked_person, start, limit + 1)
        shown, next_cursor = page(rows, limit, lambda row: (row["period"], row["kind"], row["id"]))
        locale = request_locale(request)
        return s.PaymentPage(items=[_payment(row, locale) for row in shown], next_cursor=next_cursor)

    @get(
        "/{payment_id:uuid}",
        summary="One pension payment",
        responses=problems(NOT_LINKED, NotFound("payment_not_found")),
    )
    async def get_payment(
        self, payment_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.Payment:
        row = await services.disbursements.payment(request.user.linked_person, payment_id)
        if row is None:
            raise NotFound("payment_not_found")
        return _payment(row, request_locale(request))

    @get(
        "/statements/{year:str}",
        summary="A year's statement: per month paid, withheld, back-paid, returned",
        responses=problems(BadRequest("year_invalid"), NOT_LINKED),
    )
    async def statement(
        self,
        # Text, not {year:int}: the router's int() would also take ２０２６, +2026 or 2_026.
        year: Annotated[str, Parameter(description="YYYY, e.g. 2026")],
        request: Request[Principal, Any, Any],
        services: Services,
    ) -> s.Statement:
        try:
            number = parse_year(year)
        except ValueError:
            raise BadRequest("year_invalid") from None
        locale = request_locale(request)
        months = await services.disbursements.statement(request.user.linked_person, number)
        lines = [
            s.StatementMonth(
                month=f"{number}-{m.month:02d}",
                paid_fen=m.paid_fen,
                withheld_fen=m.withheld_fen,
                withheld_reasons=[_reason(code, locale) for code in m.withheld_reasons],
                back_pay_fen=m.back_pay_fen,
                back_pay_covers=[_month(c) for c in m.back_pay_covers],
                repaid_fen=m.repaid_fen,
                repaid_covers=[_month(c) for c in m.repaid_covers],
                returned_fen=m.returned_fen,
                return_reasons=m.return_reasons,
                to_recover_fen=m.to_recover_fen,
            )
            for m in months
        ]
        return s.Statement(
            year=number,
            months=lines,
            paid_fen=sum(m.paid_fen for m in months),
            withheld_fen=sum(m.withheld_fen for m in months),
            back_pay_fen=sum(m.back_pay_fen for m in months),
            repaid_fen=sum(m.repaid_fen for m in months),
            returned_fen=sum(m.returned_fen for m in months),
            to_recover_fen=sum(m.to_recover_fen for m in months),
        )


def _run(row: asyncpg.Record | Mapping[str, Any]) -> s.Disbursement:
    problem = (
        s.RunProblem(message=row["problem"], at=row["problem_at"], retrying=not row["gave_up"])
        if row["problem"] is not None
        else None
    )
    return to_schema(s.Disbursement, row, period=_month(row["period"]), problem=problem)


class DisbursementController(Controller):
    path = "/v1/admin/disbursements"
    tags = ["administration"]
    guards = [requires(ADMIN)]
    security = BEARER

    @post(
        "/",
        status_code=HTTP_202_ACCEPTED,
        summary="Start the disbursement run of a month (or show the one started)",
        responses=problems(BadRequest("period_invalid")),
    )
    async def start(
        self, data: s.DisbursementRequest, request: Request[Principal, Any, Any], services: Services
    ) -> s.Disbursement:
        try:
            period = parse_period(data.period)
        except ValueError:
            raise BadRequest("period_invalid") from None
        return _run(await services.disbursements.request(period, request.user.actor))

    @get("/{run_id:uuid}", summary="A run: progress and totals", responses=problems(NO_RUN))
    async def get_run(self, run_id: uuid.UUID, services: Services) -> s.Disbursement:
        return _run(await services.disbursements.view(run_id))

    @post(
        "/{run_id:uuid}/approval",
        status_code=200,
        summary="Approve a completed run (an administrator other than the one who started it; audited)",
        responses=problems(
            NO_RUN,
            RUNNING,
            Conflict("disbursement_already_approved"),
            Forbidden("approval_by_requester"),
        ),
    )
    async def approve(
        self, run_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.Disbursement:
        return _run(await services.disbursements.approve(run_id, request.user.actor, request.user.named))

    @post(
        "/{run_id:uuid}/release",
        status_code=200,
        summary="Release an approved run's payment order to the bank (a second person beside the approver; audited)",
        responses=problems(NO_RUN, RUNNING, NOT_APPROVED, Forbidden("release_needs_two_people")),
    )
    async def release(
        self, run_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.Disbursement:
        return _run(await services.disbursements.release(run_id, request.user.actor, request.user.named))

    @get(
        "/{run_id:uuid}/bank-file",
        summary="A released run's payment order for the bank (CSV, audited)",
        operation_class=csv_download(ORDER_HEADER),
        responses=problems(NO_RUN, RUNNING, NOT_APPROVED, Conflict("disbursement_not_released")),
    )
    async def bank_file(self, run_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services) -> Stream:
        chunks = await services.disbursements.bank_order(run_id, request.user.actor)
        return Stream(
            chunks,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="payments-{run_id}.csv"'},
        )

    @post(
        "/bank-returns",
        status_code=200,
        request_max_body_size=BANK_RETURNS_MAX_BYTES,
        summary="Import the bank's return file (CSV: reference,result,reason): all lines or none",
        operation_class=csv_upload(RETURN_HEADER, "0b3c5a9e-6f1d-4c52-9a4e-2f7d8c1b6e10,returned,account closed"),
        responses=problems(
            BadRequest("bank_file_encoding"),
            BODY_TOO_LARGE,
            Unprocessable(
                "bank_file_refused", lines=1, errors=[{"line": 2, "reason": "the result must be 'paid' or 'returned'"}]
            ),
        ),
    )
    async def bank_returns(self, request: Request[Principal, Any, Any], services: Services) -> s.BankReturnReport:
        try:
            text = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("bank_file_encoding") from None
        report = await services.disbursements.import_returns(text, request.user.actor)
        if report.errors:
            raise Unprocessable(
                "bank_file_refused",
                lines=len(report.errors),
                errors=[{"line": e.line, "reason": e.reason} for e in report.errors[:1000]],
            )
        return s.BankReturnReport(
            confirmed=report.confirmed,
            returned=report.returned,
            unchanged=report.unchanged,
            errors=[],
            reconciled_runs=report.reconciled,
        )


class ReturnedPaymentController(Controller):
    path = "/v1/admin/payments"
    tags = ["administration"]
    guards = [requires(OPERATOR, ADMIN)]
    security = BEARER

    @get("/returned", summary="Payments the bank sent back, with its reasons")
    async def returned(
        self,
        services: Services,
        cursor: Cursor = None,
        limit: Limit = 50,
    ) -> s.ReturnedPage:
        start = after(cursor, uuid.UUID)
        rows = await services.disbursements.returned(start[0] if start else None, limit + 1)
        shown, next_cursor = page(rows, limit, lambda row: (row["id"],))
        items = [to_schema(s.ReturnedPayment, row, period=_month(row["period"])) for row in shown]
        return s.ReturnedPage(items=items, next_cursor=next_cursor)


class BankAccountController(Controller):
    path = "/v1/admin/bank-accounts"
    tags = ["administration"]
    guards = [requires(ADMIN)]
    security = BEARER

    @post(
        "/",
        status_code=200,
        summary="Set (or confirm) the account a pension is paid into: the next run pays returned payments again",
        responses=problems(
            BadRequest("national_id_invalid"),
            BadRequest("bank_account_invalid"),
            *STAFF_REASON_REFUSALS,
            NotFound("pension_not_found"),
        ),
    )
    async def set_account(
        self, data: s.BankAccountRequest, request: Request[Principal, Any, Any], services: Services
    ) -> s.BankAccountSet:
        done = await services.bank_accounts.set_account(
            request.user.actor, data.national_id, data.account, data.reason, request.user.named
        )
        return msgspec.convert(done, s.BankAccountSet, from_attributes=True)
