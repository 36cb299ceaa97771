"""The operator console: server-rendered pages under /console, for operators, auditors and administrators.

Who sees what: operators and administrators review checks, find people and watch runs; administrators
also send dead-letter notifications again; auditors read the audit log and nothing else.
"""

from __future__ import annotations

import json
import posixpath
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from litestar import Controller, Request, Response, Router, get, post
from litestar.params import Parameter
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_303_SEE_OTHER

from app.console import session as cs
from app.console.forms import (
    AlertClosingForm,
    AppealDecisionForm,
    ClaimNextForm,
    DecisionForm,
    LanguageForm,
    MediaAccessForm,
    ReasonForm,
    ScheduleForm,
    SearchForm,
    SignInForm,
    TokenForm,
    read_form,
)
from app.console.text import (
    actor_label,
    label,
    operator_reason,
    reason_label,
    score_label,
    score_value,
    status_label,
    waited,
)
from app.http.locale import request_locale
from app.http.problems import classify
from app.http.review import schemas as rs
from app.http.review.schemas import ReviewStatus
from app.services import Services
from auth.service import OPERATOR_SESSION_S, ConsoleSession
from core.errors import AppError, BadRequest, Conflict, Forbidden, NotFound
from core.principal import ADMIN, AUDITOR, OPERATOR
from core.text import day, message, money, number, text
from infra.crypto import mask_phone
from liveness.decision import match_band
from liveness.model import Reason, Thresholds
from notifications.rules import LOCAL_TZ
from notifications.templates import render
from payments.recovery.rules import CLOSED as RECOVERY_CLOSED
from payments.recovery.rules import STATES as RECOVERY_STATES
from payments.recovery.rules import CaseMoney
from payments.supervision.rules import KINDS as ALERT_KINDS
from payments.supervision.rules import STATES as ALERT_STATES
from review.lookup import AuditFilter, PersonQuery

REVIEWERS = (OPERATOR, ADMIN)
STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
# The menu: (page, label, who sees it); the first page a role sees is its home.
MENU = (
    ("/console/queue", "queue", REVIEWERS),
    ("/console/persons", "persons", REVIEWERS),
    ("/console/visits", "visits", REVIEWERS),
    ("/console/ladder", "ladder", REVIEWERS),
    ("/console/runs", "runs", REVIEWERS),
    ("/console/alerts", "alerts", REVIEWERS),
    ("/console/recoveries", "recovery", (ADMIN,)),
    ("/console/notifications", "dead_letters", (ADMIN,)),
    ("/console/audit", "audit", (AUDITOR,)),
)
HOME = {role: next(path for path, _, roles in MENU if role in roles) for role in (OPERATOR, ADMIN, AUDITOR)}
QUEUE_NOTES = ("decided", "queue_empty")
QUEUE_SHOWN = 50
VISIT_NOTES = ("done_scheduled", "done_certified", "done_decided")
ALERTS_SHOWN = 200
RECOVERY_OPEN = tuple(s for s in RECOVERY_STATES if s not in RECOVERY_CLOSED)
RECOVERY_NOTES = ("recovery_done_asked", "recovery_done_written_off")
OPEN_SHOWN = 100
RECENT_RUNS = 24
_SIGN_IN_TOKEN_S = 30 * 60


def _see_other(path: str, **query: str) -> Redirect:
    shown = {k: v for k, v in query.items() if v}
    return Redirect(path + ("?" + urlencode(shown) if shown else ""), status_code=HTTP_303_SEE_OTHER)


def _full_path(request: Request[Any, Any, Any]) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _local_path(target: str) -> str:
    """Only a console page may follow sign-in or a language change: never another site (`//host`,
    `https://…`) nor another part of this one (`/console/../v1`)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target or not parts.path.startswith("/"):
        return cs.PATH
    path = posixpath.normpath(parts.path)
    if path != cs.PATH and not path.startswith(cs.PATH + "/"):
        return cs.PATH
    return path + (f"?{parts.query}" if parts.query else "")


def _page(
    request: Request[Any, Any, Any], name: str, *, status: int = 200, locale: str | None = None, **context: Any
) -> Template:
    session: ConsoleSession | None = request.state.get("console")
    locale = locale or (session.locale if session else request_locale(request))
    now = datetime.now(UTC)
    return Template(
        template_name=name,
        status_code=status,
        context={
            "t": lambda key, **params: label(key, locale, **params),
            "status_label": lambda status: status_label(status, locale),
            "reason_label": lambda code: reason_label(code, locale),
            "operator_reason": lambda code: operator_reason(code, locale),
            "score_label": lambda name: score_label(name, locale),
            "score_value": lambda name, value: score_value(name, value, locale),
            "actor": lambda who: actor_label(who, locale) if who else "",
            "waited": lambda since: waited(since, now, locale),
            "money": lambda fen: money(fen, locale),
            "number": lambda count: number(count, locale),
            "day": lambda value: day(value.isoformat()[:10], locale) if value else "",
            "local": lambda at, fmt: at.astimezone(LOCAL_TZ).strftime(fmt) if at else "",
            "card_status": lambda status: text(f"card_status.{status}", locale),
            "withheld": lambda reason: text(f"withheld.{reason}", locale),
            "locale": locale,
            "session": session,
            "menu": [(path, key) for path, key, roles in MENU if session and session.principal.role in roles],
            "path": request.url.path,
            "full_path": _full_path(request),
            "home": HOME[session.principal.role] if session else cs.PATH,
            "now": now,
            **context,
        },
    )


class SignInController(Controller):
    path = "/"

    @get("/sign-in")
    async def sign_in_page(self, request: Request[Any, Any, Any], next: str = "") -> Template:
        return self._form(request, _local_path(next))

    @post("/sign-in")
    async def sign_in(self, request: Request[Any, Any, Any], services: Services) -> Response[Any] | Template:
        form = await read_form(request, SignInForm)
        if not cs.same_token(form.csrf, request.cookies.get(cs.PRE_SIGN_IN_COOKIE, "")) or not form.csrf:
            return self._form(request, _local_path(form.next), error="console_form_expired", status=403)
        try:
            secret, session = await services.auth.console_sign_in(
                form.username.strip(), form.password, form.totp.strip(), replacing=request.cookies.get(cs.COOKIE)
            )
        except AppError as exc:
            return self._form(
                request, _local_path(form.next), error=exc.code, status=exc.status, username=form.username
            )
        response = _see_other(_local_path(form.next) if form.next else HOME[session.principal.role])
        cs.set_cookie(response, request, cs.COOKIE, secret, OPERATOR_SESSION_S)
        cs.clear_cookie(response, cs.PRE_SIGN_IN_COOKIE)
        return response

    def _form(
        self,
        request: Request[Any, Any, Any],
        next_path: str,
        *,
        error: str | None = None,
        status: int = 200,
        username: str = "",
    ) -> Template:
        token = secrets.token_urlsafe(24)
        locale = request_locale(request)
        page = _page(
            request,
            "sign_in.html",
            status=status,
            locale=locale,
            csrf=token,
            next=next_path,
            username=username,
            error=message(error, locale) if error else None,
        )
        cs.set_cookie(page, request, cs.PRE_SIGN_IN_COOKIE, token, _SIGN_IN_TOKEN_S)
        return page


class SessionController(Controller):
    path = "/"
    guards = [cs.requires_console(OPERATOR, AUDITOR, ADMIN)]

    @get("/")
    async def home(self, request: Request[Any, Any, Any]) -> Redirect:
        return _see_other(HOME[cs.session_of(request).principal.role])

    @post("/sign-out")
    async def sign_out(self, request: Request[Any, Any, Any], services: Services) -> Redirect:
        await read_form(request, TokenForm)
        await services.auth.logout(cs.session_of(request).principal)
        response = _see_other("/console/sign-in")
        cs.clear_cookie(response, cs.COOKIE)
        return response

    @post("/language")
    async def language(self, request: Request[Any, Any, Any], services: Services) -> Redirect:
        form = await read_form(request, LanguageForm)
        await services.auth.set_operator_locale(cs.session_of(request).principal, form.locale)
        return _see_other(_local_path(form.next))


class ReviewPages(Controller):
    path = "/"
    guards = [cs.requires_console(*REVIEWERS)]

    @get("/queue")
    async def queue(
        self,
        request: Request[Any, Any, Any],
        services: Services,
        status: ReviewStatus = "needs_review",
        reason: str = "",
        region: str = "",
        mine: bool = False,
        cursor: str | None = None,
        note: str = "",
    ) -> Template:
        principal = cs.session_of(request).principal
        filters = {"reason": reason or None, "region": region or None}
        found = await services.review.queue(
            status, cursor, QUEUE_SHOWN, held_by=principal.subject_id if mine else None, **filters
        )
        return _page(
            request,
            "queue.html",
            page=found,
            summary=await services.review.queue_summary(principal, status, **filters),
            late_after_h=services.settings.review_sla_h,
            me=principal.subject_id,
            shown_status=status,
            reason=reason,
            region=region,
            mine=mine,
            choices=await services.review.filter_choices(),
            note=label(note, cs.session_of(request).locale) if note in QUEUE_NOTES else None,
        )

    @post("/queue/next")
    async def claim_next(self, request: Request[Any, Any, Any], services: Services) -> Redirect:
        form = await read_form(request, ClaimNextForm)
        return await _next_check(request, services, form.reason, form.region)

    @post("/checks/{check_id:uuid}/claim")
    async def claim(self, check_id: uuid.UUID, request: Request[Any, Any, Any], services: Services) -> Redirect:
        form = await read_form(request, ClaimNextForm)
        await services.review.claim(cs.session_of(request).principal, check_id)
        return _see_other(f"/console/checks/{check_id}", reason=form.reason, region=form.region)

    @get("/checks/{check_id:uuid}")
    async def check(
        self,
        check_id: uuid.UUID,
        request: Request[Any, Any, Any],
        services: Services,
        reason: str = "",
        region: str = "",
        note: str = "",
    ) -> Template:
        shown = label(note, cs.session_of(request).locale) if note == "decided_next" else None
        return await self._check_page(request, services, check_id, queue=QueueFilters(reason, region), note=shown)

    @post("/checks/{check_id:uuid}/decision")
    async def decide(
        self, check_id: uuid.UUID, request: Request[Any, Any, Any], services: Services
    ) -> Redirect | Template:
        form: DecisionForm | None = None
        try:
            form = await read_form(request, DecisionForm)
            await services.review.decide(cs.session_of(request).principal, check_id, form.decision, form.reason)
        except BadRequest as exc:
            queue = QueueFilters(form.queue_reason, form.queue_region) if form else QueueFilters()
            return await self._check_page(request, services, check_id, queue=queue, form=form, error=exc, status=400)
        return await _next_check(request, services, form.queue_reason, form.queue_region, decided=True)

    @post("/checks/{check_id:uuid}/media-access", status_code=200)
    async def media_access(self, check_id: uuid.UUID, request: Request[Any, Any, Any], services: Services) -> Template:
        """The check's page with its images, for a reason kept in the audit log. A page, not a redirect:
        the links are made for this answer only, and the page shown afterwards is without them again."""
        asked = ""
        try:
            asked = (await read_form(request, MediaAccessForm)).reason
            return await self._check_page(request, services, check_id, reason=asked)
        except BadRequest as exc:
            return await self._check_page(request, services, check_id, asked=asked, error=exc, status=400)

    async def _check_page(
        self,
        request: Request[Any, Any, Any],
        services: Services,
        check_id: uuid.UUID,
        *,
        queue: QueueFilters | None = None,
        reason: str | None = None,
        form: DecisionForm | None = None,
        asked: str = "",
        note: str | None = None,
        error: AppError | None = None,
        status: int = 200,
    ) -> Template:
        session = cs.session_of(request)
        try:
            check = rs.check_for_review_of(await services.review.view(session.principal, check_id, reason=reason))
        except Conflict as exc:
            if exc.code != "claim_required":
                raise
            return _page(request, "check_unclaimed.html", status=409, check_id=check_id)
        thresholds = Thresholds.configured(services.settings)
        distance = check.scores.get("match_distance")
        return _page(
            request,
            "check.html",
            status=status,
            check=check,
            detected={d.action: d for d in check.detected_actions},
            distance=distance,
            accept=thresholds.accept_distance,
            reject=thresholds.reject_distance,
            band=_band(distance, thresholds),
            reviewable=check.status in ("needs_review", "home_visit"),
            form=form,
            asked=asked,
            note=note,
            queue=queue or QueueFilters(),
            error=_text(request, error.code, error.params) if error else None,
            # A language change comes back to the check, not to the post that showed it.
            full_path=f"/console/checks/{check_id}",
        )


async def _next_check(
    request: Request[Any, Any, Any], services: Services, reason: str, region: str, *, decided: bool = False
) -> Redirect:
    """Claim the oldest waiting check under the queue's filters and open it; the queue when none is left."""
    check_id = await services.review.claim_next(cs.session_of(request).principal, reason or None, region or None)
    if check_id is None:
        return _see_other("/console/queue", reason=reason, region=region, note="decided" if decided else "queue_empty")
    return _see_other(
        f"/console/checks/{check_id}", reason=reason, region=region, note="decided_next" if decided else ""
    )


@dataclass(frozen=True)
class QueueFilters:
    """The queue's filters, carried through a check's page so that the next check comes from the same queue."""

    reason: str = ""
    region: str = ""


def _band(distance: float | None, thresholds: Thresholds) -> str:
    """The worker's own band rule (liveness.decision), named for the page."""
    if distance is None:
        return "band_none"
    return {None: "band_accept", Reason.MATCH_UNCERTAIN: "band_review", Reason.NOT_SAME_PERSON: "band_reject"}[
        match_band(distance, thresholds)
    ]


class PersonPages(Controller):
    path = "/persons"
    guards = [cs.requires_console(*REVIEWERS)]

    @get("/")
    async def search_page(self, request: Request[Any, Any, Any]) -> Template:
        return _page(request, "persons.html", found=None, shown="")

    @post("/", status_code=200)
    async def search(self, request: Request[Any, Any, Any], services: Services) -> Template:
        """A post, not a query string: the number typed must not land in URLs, history or access logs."""
        session = cs.session_of(request)
        try:
            query = PersonQuery.parse((await read_form(request, SearchForm)).q)
        except BadRequest as exc:
            return _page(
                request, "persons.html", status=400, found=None, shown="", error=_text(request, exc.code, exc.params)
            )
        found = await services.console.search(session.principal, query)
        return _page(request, "persons.html", found=found, shown=query.shown)

    @get("/{person_id:uuid}")
    async def person(self, person_id: uuid.UUID, request: Request[Any, Any, Any], services: Services) -> Template:
        session = cs.session_of(request)
        record = await services.console.person(session.principal, person_id)
        notices = [(row, render(row["kind"], session.locale, row["params"]).title) for row in record.notifications]
        # What confirmed the person from data (the look is audited, as through the API).
        trail = await services.evidence.trail_for_staff(session.principal, person_id, with_events=False)
        return _page(
            request,
            "person.html",
            record=record,
            notices=notices,
            confirmations=trail.confirmations,
            phone=mask_phone(record.person["phone"]),
        )


class OperationsPages(Controller):
    path = "/"

    @get("/runs", guards=[cs.requires_console(*REVIEWERS)])
    async def runs(self, request: Request[Any, Any, Any], services: Services) -> Template:
        return _page(request, "runs.html", runs=await services.disbursements.recent_runs(RECENT_RUNS))

    @get("/runs/{run_id:uuid}", guards=[cs.requires_console(*REVIEWERS)])
    async def run(self, run_id: uuid.UUID, request: Request[Any, Any, Any], services: Services) -> Template:
        return _page(
            request,
            "run.html",
            run=await services.disbursements.view(run_id),
            withheld_by_reason=await services.disbursements.withheld_by_reason(run_id),
        )

    @post("/runs/{run_id:uuid}/{step:str}", guards=[cs.requires_console(ADMIN)])
    async def sign_run(
        self, run_id: uuid.UUID, step: str, request: Request[Any, Any, Any], services: Services
    ) -> Redirect:
        """Approve or release a run (payments.disbursement.approval decides who may; a refusal is a page)."""
        await read_form(request, TokenForm)
        signs = {"approval": services.disbursements.approve, "release": services.disbursements.release}
        if step not in signs:
            raise NotFound()
        principal = cs.session_of(request).principal
        await signs[step](run_id, principal.actor, principal.named)
        return _see_other(f"/console/runs/{run_id}")

    @get("/notifications", guards=[cs.requires_console(ADMIN)])
    async def dead_letters(self, request: Request[Any, Any, Any], services: Services, note: str = "") -> Template:
        rows = await services.notifications.deliveries("dead", None, 200)
        return _page(request, "dead_letters.html", rows=rows, note=note == "retried")

    @post("/notifications/{delivery_id:uuid}/retry", guards=[cs.requires_console(ADMIN)])
    async def retry(self, delivery_id: uuid.UUID, request: Request[Any, Any, Any], services: Services) -> Redirect:
        await read_form(request, TokenForm)
        await services.notifications.retry(cs.session_of(request).principal.actor, delivery_id)
        return _see_other("/console/notifications", note="retried")

    @get("/audit", guards=[cs.requires_console(AUDITOR)])
    async def audit(
        self,
        request: Request[Any, Any, Any],
        services: Services,
        before: Annotated[str | None, Parameter(pattern=r"^[0-9]{1,5}/[0-9]{1,19}$")] = None,
        actor: Annotated[str, Parameter(max_length=200)] = "",
        action: Annotated[str, Parameter(max_length=200)] = "",
        subject: Annotated[str, Parameter(max_length=200)] = "",
        first_day: Annotated[date | None, Parameter(query="from")] = None,
        last_day: Annotated[date | None, Parameter(query="to")] = None,
    ) -> Template:
        """The log newest first, by actor, action, subject and China's days; the chain checked with every page."""
        shown = AuditFilter(actor.strip(), action.strip(), subject.strip(), first_day, last_day)
        found = await services.console.audit_log(cs.session_of(request).principal, shown, _audit_row(before))
        return _page(request, "audit.html", log=found, shown=shown, detail=_detail)


def _audit_row(before: str | None) -> tuple[int, int] | None:
    """The row a page of the log starts below, `chain/seq`; a 400 beyond smallint or bigint."""
    if before is None:
        return None
    chain, seq = (int(part) for part in before.split("/"))
    if chain > 2**15 - 1 or seq > 2**63 - 1:
        raise BadRequest("invalid_body", detail="before")
    return chain, seq


def _detail(value: object) -> str:
    """An audit row's detail as text: a string as it is, anything else as JSON (Chinese unescaped)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


class LadderPages(Controller):
    """The rungs below the face check: visits and appointments to arrange and certify, appeals to
    answer (the API's /v1/admin routes, as pages), and the report of how pensioners were certified."""

    path = "/"
    guards = [cs.requires_console(*REVIEWERS)]

    @get("/visits")
    async def visits(self, request: Request[Any, Any, Any], services: Services, note: str = "") -> Template:
        return await self._visits_page(request, services, note=note)

    @post("/visits/requests/{request_id:uuid}/schedule")
    async def schedule(
        self, request_id: uuid.UUID, request: Request[Any, Any, Any], services: Services
    ) -> Redirect | Template:
        try:
            form = await read_form(request, ScheduleForm)
            try:
                at = datetime.fromisoformat(form.scheduled_for).replace(tzinfo=LOCAL_TZ)
            except ValueError:
                raise BadRequest("invalid_body", detail="scheduled_for") from None
            await services.in_person.schedule(cs.session_of(request).principal, request_id, at, form.place)
        except (BadRequest, Conflict) as exc:  # a bad form, or a request or appeal closed meanwhile
            return await self._visits_page(request, services, error=exc, about=request_id)
        return _see_other("/console/visits", note="done_scheduled")

    @post("/visits/requests/{request_id:uuid}/certification")
    async def certify(
        self, request_id: uuid.UUID, request: Request[Any, Any, Any], services: Services
    ) -> Redirect | Template:
        try:
            form = await read_form(request, ReasonForm)
            await services.in_person.certify_request(cs.session_of(request).principal, request_id, form.reason)
        except (BadRequest, Conflict) as exc:  # a bad form, or a request or appeal closed meanwhile
            return await self._visits_page(request, services, error=exc, about=request_id)
        return _see_other("/console/visits", note="done_certified")

    @post("/visits/appeals/{appeal_id:uuid}/decision")
    async def decide(
        self, appeal_id: uuid.UUID, request: Request[Any, Any, Any], services: Services
    ) -> Redirect | Template:
        try:
            form = await read_form(request, AppealDecisionForm)
            await services.in_person.decide_appeal(
                cs.session_of(request).principal, appeal_id, form.outcome, form.reason
            )
        except (BadRequest, Conflict) as exc:  # a bad form, or a request or appeal closed meanwhile
            return await self._visits_page(request, services, error=exc, about=appeal_id)
        return _see_other("/console/visits", note="done_decided")

    @get("/ladder")
    async def ladder(
        self,
        request: Request[Any, Any, Any],
        services: Services,
        year: Annotated[int | None, Parameter(ge=2000, le=2100)] = None,
    ) -> Template:
        year = year or datetime.now(LOCAL_TZ).year
        return _page(request, "ladder.html", report=await services.ladder.report(year, None))

    async def _visits_page(
        self,
        request: Request[Any, Any, Any],
        services: Services,
        *,
        note: str = "",
        error: AppError | None = None,
        about: uuid.UUID | None = None,
    ) -> Template:
        requests = await services.in_person.open_requests(OPEN_SHOWN)
        appeals = await services.in_person.open_appeals(OPEN_SHOWN)
        return _page(
            request,
            "visits.html",
            status=error.status if error else 200,
            requests=requests.rows,
            appeals=appeals.rows,
            now=requests.now,
            note=note if note in VISIT_NOTES else None,
            error=_text(request, error.code, error.params) if error else None,
            about=about,
            full_path="/console/visits",
        )


class SupervisionPages(Controller):
    """Fund-supervision alerts (the API's /v1/admin/alerts, as a page): filtered by kind and state, each
    closed with a reason."""

    path = "/alerts"
    guards = [cs.requires_console(*REVIEWERS)]

    @get("/")
    async def alerts(
        self,
        request: Request[Any, Any, Any],
        services: Services,
        kind: Annotated[str, Parameter(max_length=40)] = "",
        in_state: Annotated[str, Parameter(query="state", max_length=10)] = "open",
        note: str = "",
    ) -> Template:
        return await self._page(request, services, kind=kind, state=in_state, note=note)

    @post("/{alert_id:uuid}/closing")
    async def close(
        self, alert_id: uuid.UUID, request: Request[Any, Any, Any], services: Services
    ) -> Redirect | Template:
        try:
            form = await read_form(request, AlertClosingForm)
            await services.supervision.close(cs.session_of(request).principal, alert_id, form.reason)
        except (BadRequest, Conflict) as exc:
            return await self._page(request, services, kind="", state="open", error=exc, about=alert_id)
        return _see_other("/console/alerts", note="alert_done_closed")

    async def _page(
        self,
        request: Request[Any, Any, Any],
        services: Services,
        *,
        kind: str,
        state: str,
        note: str = "",
        error: AppError | None = None,
        about: uuid.UUID | None = None,
    ) -> Template:
        # An unknown filter value shows everything rather than nothing: the form only offers known ones.
        kind = kind if kind in ALERT_KINDS else ""
        state = state if state in ALERT_STATES else ""
        rows = await services.supervision.alerts(kind or None, state or None, None, ALERTS_SHOWN)
        return _page(
            request,
            "alerts.html",
            status=error.status if error else 200,
            alerts=rows,
            kinds=ALERT_KINDS,
            states=ALERT_STATES,
            kind=kind,
            state=state,
            note=note if note == "alert_done_closed" else None,
            error=_text(request, error.code, error.params) if error else None,
            about=about,
            full_path=_full_path(request),
        )


class RecoveryPages(Controller):
    """Recovery cases for administrators (the API's /v1/admin/recoveries, as a page): what each owes,
    recovered and wrote off; a write-off asked by one administrator and approved by another."""

    path = "/recoveries"
    guards = [cs.requires_console(ADMIN)]

    @get("/")
    async def cases(
        self,
        request: Request[Any, Any, Any],
        services: Services,
        in_state: Annotated[str, Parameter(query="state", max_length=20)] = "",
        note: str = "",
    ) -> Template:
        return await self._page(request, services, state=in_state, note=note)

    @post("/{case_id:uuid}/write-off")
    async def ask(self, case_id: uuid.UUID, request: Request[Any, Any, Any], services: Services) -> Redirect | Template:
        try:
            form = await read_form(request, ReasonForm)
            await services.recovery.ask_write_off(cs.session_of(request).principal, case_id, form.reason)
        except (BadRequest, Conflict) as exc:
            return await self._page(request, services, state="", error=exc, about=case_id)
        return _see_other("/console/recoveries", note="recovery_done_asked")

    @post("/{case_id:uuid}/write-off/approval")
    async def approve(
        self, case_id: uuid.UUID, request: Request[Any, Any, Any], services: Services
    ) -> Redirect | Template:
        try:
            await read_form(request, TokenForm)
            await services.recovery.approve_write_off(cs.session_of(request).principal, case_id)
        except (BadRequest, Conflict, Forbidden) as exc:
            return await self._page(request, services, state="", error=exc, about=case_id)
        return _see_other("/console/recoveries", note="recovery_done_written_off")

    async def _page(
        self,
        request: Request[Any, Any, Any],
        services: Services,
        *,
        state: str,
        note: str = "",
        error: AppError | None = None,
        about: uuid.UUID | None = None,
    ) -> Template:
        state = state if state in RECOVERY_STATES else ""
        rows = await services.recovery.cases((state,) if state else RECOVERY_OPEN, None, ALERTS_SHOWN)
        return _page(
            request,
            "recoveries.html",
            status=error.status if error else 200,
            cases=rows,
            states=RECOVERY_STATES,
            state=state,
            outstanding=lambda c: (
                CaseMoney(c["state"], c["owed_fen"], c["recovered_fen"], c["written_off_fen"]).outstanding_fen
            ),
            note=note if note in RECOVERY_NOTES else None,
            error=_text(request, error.code, error.params) if error else None,
            about=about,
            full_path=_full_path(request),
        )


# -- errors: a page in the operator's language, not problem+json: a person at a browser reads it -----
def error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Every refusal under /console (unknown pages and methods too, from the app's handler)."""
    if isinstance(exc, cs.SignInRequired):
        response = _see_other("/console/sign-in", next=_full_path(request) if request.method == "GET" else "")
        cs.clear_cookie(response, cs.COOKIE)
        return response
    found = classify(request, exc)
    page = _page(request, "error.html", status=found.status, text=_text(request, found.code, found.params))
    if found.headers:
        page.headers.update(found.headers)
    return page


def _text(request: Request[Any, Any, Any], code: str, params: dict[str, Any]) -> str:
    session: ConsoleSession | None = request.state.get("console")
    return message(code, session.locale if session else request_locale(request), **params)


def console_router() -> Router:
    return Router(
        path=cs.PATH,
        route_handlers=[
            SignInController,
            SessionController,
            ReviewPages,
            PersonPages,
            OperationsPages,
            LadderPages,
            SupervisionPages,
            RecoveryPages,
            create_static_files_router(path="/static", directories=[STATIC], name="console_static"),
        ],
        include_in_schema=False,
    )
