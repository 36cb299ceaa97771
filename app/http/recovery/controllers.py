"""Recovery of pensions paid after a death, for administrators: cases, the recall file for the bank,
its answers, and write-offs that a second administrator approves."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
from litestar import Controller, Request, get, post
from litestar.params import Parameter
from litestar.response import Stream

from app.http.auth.guards import requires
from app.http.openapi import BODY_TOO_LARGE, csv_download, csv_upload, problems
from app.http.paging import Cursor, Limit
from app.http.recovery import schemas as s
from app.http.schemas import BEARER, STAFF_REASON_REFUSALS, to_schema
from app.services import Services
from core.errors import BadRequest, Conflict, Forbidden, NotFound
from core.paging import after, page
from core.principal import ADMIN, Principal
from payments.disbursement.bankfile import ORDER_HEADER
from payments.recovery import rules
from payments.recovery.recallfile import ANSWER_HEADER
from payments.recovery.service import CaseDetail

ANSWERS_MAX_BYTES = 64 * 1024 * 1024
NO_CASE = NotFound("recovery_case_not_found")
CLOSED = Conflict("recovery_case_closed", state="recovered")
States = Annotated[
    list[s.CaseState] | None, Parameter(query="state", description="only cases in these states (default: all)")
]


def _case(row: asyncpg.Record) -> s.RecoveryCase:
    money = rules.CaseMoney(row["state"], row["owed_fen"], row["recovered_fen"], row["written_off_fen"])
    return to_schema(
        s.RecoveryCase, row, masked_national_id=row["national_id_masked"], outstanding_fen=money.outstanding_fen
    )


def _detail(found: CaseDetail) -> s.RecoveryCaseDetail:
    return s.RecoveryCaseDetail(case=_case(found.case), recalls=[to_schema(s.Recall, r) for r in found.recalls])


class RecoveryController(Controller):
    path = "/v1/admin/recoveries"
    tags = ["administration"]
    guards = [requires(ADMIN)]
    security = BEARER

    @get("/", summary="Recovery cases, oldest first")
    async def list_cases(
        self, services: Services, in_state: States = None, cursor: Cursor = None, limit: Limit = 50
    ) -> s.RecoveryCasePage:
        start = after(cursor, uuid.UUID)
        rows = await services.recovery.cases(tuple(in_state or ()), start[0] if start else None, limit + 1)
        shown, next_cursor = page(rows, limit, lambda row: (row["id"],))
        return s.RecoveryCasePage(items=[_case(row) for row in shown], next_cursor=next_cursor)

    @get("/{case_id:uuid}", summary="A recovery case and its recalls", responses=problems(NO_CASE))
    async def get_case(self, case_id: uuid.UUID, services: Services) -> s.RecoveryCaseDetail:
        return _detail(await services.recovery.case(case_id))

    @post(
        "/recall-file",
        status_code=200,
        summary="Recall what is outstanding on every open case, and the file of all recalls the bank has not answered (CSV, audited)",
        operation_class=csv_download(ORDER_HEADER),
    )
    async def recall_file(self, request: Request[Principal, Any, Any], services: Services) -> Stream:
        made = await services.recovery.recall_file(request.user.actor)
        return Stream(
            made.chunks,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="recalls.csv"'},
        )

    @post(
        "/recall-answers",
        status_code=200,
        request_max_body_size=ANSWERS_MAX_BYTES,
        summary="Import the bank's answers to recalls (CSV: reference,recovered,reason), line by line",
        operation_class=csv_upload(ANSWER_HEADER, "0197a3c2-5e4f-7a10-8b2c-3d4e5f607182,1200.00,balance short"),
        responses=problems(BadRequest("bank_file_encoding"), BODY_TOO_LARGE),
    )
    async def recall_answers(self, request: Request[Principal, Any, Any], services: Services) -> s.RecallAnswerReport:
        try:
            text = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("bank_file_encoding") from None
        report = await services.recovery.import_answers(text, request.user.actor)
        return s.RecallAnswerReport(
            recovered=report.recovered,
            partly=report.partly,
            nothing=report.nothing,
            unchanged=report.unchanged,
            recovered_fen=report.recovered_fen,
            errors=[s.LineRefusal(line=e.line, reason=e.reason) for e in report.errors[:1000]],
        )

    @post(
        "/{case_id:uuid}/write-off",
        status_code=200,
        summary="Ask to write off what is outstanding (a second administrator approves)",
        responses=problems(
            NO_CASE, CLOSED, Conflict("recall_outstanding"), Conflict("nothing_to_write_off"), *STAFF_REASON_REFUSALS
        ),
    )
    async def ask_write_off(
        self, case_id: uuid.UUID, data: s.WriteOffRequest, request: Request[Principal, Any, Any], services: Services
    ) -> s.RecoveryCaseDetail:
        return _detail(await services.recovery.ask_write_off(request.user, case_id, data.reason))

    @post(
        "/{case_id:uuid}/write-off/approval",
        status_code=200,
        summary="Approve the write-off another administrator asked for",
        responses=problems(
            NO_CASE,
            CLOSED,
            Conflict("write_off_not_asked"),
            Conflict("recall_outstanding"),
            Forbidden("write_off_needs_second_admin"),
        ),
    )
    async def approve_write_off(
        self, case_id: uuid.UUID, request: Request[Principal, Any, Any], services: Services
    ) -> s.RecoveryCaseDetail:
        return _detail(await services.recovery.approve_write_off(request.user, case_id))
