"""A Hypothesis state machine against the real API and database: random charges, refunds, retries
with reused keys (same and different bodies), concurrent duplicates and batch settlements, with the
ledger's invariants, its reconciliation and a model of the cardholder's balance checked after every
step.

Hypothesis drives the machine synchronously in a worker thread; each step runs its requests on the
test's event loop (where the app and its pool live) and waits for them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import asyncpg
import httpx
import hypothesis
import msgspec
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from app.services import Services
from infra.config import Settings
from tests.conftest import Importer
from tests.factories import (
    activated_cardholder,
    bearer,
    concurrent_client,
    mint_qr,
    person_id_of,
    problem_code,
)
from tests.ledger_checks import allocate, ledger_violations, medical_balance

T = TypeVar("T")
CHARGES = "/v1/terminal/charges"
ALLOCATION = 20_000
MERCHANTS = ("Pharmacy A", "Pharmacy A", "Clinic B")  # terminals 0 and 1 are two tills of one pharmacy


@dataclass
class World:
    """What every example shares: the loop the app runs on, the client, the terminals."""

    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    services: Services
    folder: Path
    terminals: list[dict[str, str]] = field(default_factory=list)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.services.pool

    async def new_cardholder(self) -> tuple[dict[str, str], uuid.UUID]:
        """An imported person with an active card and a funded medical account, signed in on a device."""
        holder = await activated_cardholder(self.client, self.pool, Importer(self.services), self.folder)
        await allocate(self.services, self.folder, holder["person"], ALLOCATION)
        return holder["headers"], await person_id_of(self.pool, holder["person"].phone)


@dataclass
class Charge:
    amount_fen: int
    refunded_fen: int
    merchant: str


@dataclass(frozen=True)
class Sent:
    """A request as sent, with its answer: what a retry of its key must get again."""

    terminal: int
    key: str
    path: str
    body: dict[str, Any]
    status: int
    content: bytes


class LedgerMachine(RuleBasedStateMachine):
    world: ClassVar[World]
    _keys = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        # A new cardholder per example: the examples share the database, and the invariants hold across it.
        self.holder, self.person_id = self.world.run(self.world.new_cardholder())
        self.balance = ALLOCATION
        self.charges: dict[str, Charge] = {}
        self.sent: list[Sent] = []

    # -- helpers ---------------------------------------------------------------------------------
    def _key(self) -> str:
        return f"key-{next(self._keys)}"

    async def _post(self, terminal: int, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {**self.world.terminals[terminal], "Idempotency-Key": key}
        return await self.world.client.post(path, json=body, headers=headers)

    def _charge_body(self, amount: int) -> dict[str, Any]:
        return {
            "qr_token": self.world.run(mint_qr(self.world.client, self.holder)),
            "amount_fen": amount,
            "description": "药费",
        }

    def _record(self, terminal: int, key: str, path: str, body: dict[str, Any], r: httpx.Response) -> None:
        assert r.status_code < 500, r.text
        self.sent.append(Sent(terminal, key, path, body, r.status_code, r.content))
        if r.status_code == 201 and path == CHARGES:
            self.balance -= body["amount_fen"]
            self.charges[r.json()["charge_id"]] = Charge(body["amount_fen"], 0, MERCHANTS[terminal])
        elif r.status_code == 201:
            charge = self.charges[r.json()["charge_id"]]
            charge.refunded_fen += body["amount_fen"]
            self.balance += body["amount_fen"]

    def _refund_expectation(self, terminal: int, charge: Charge, amount: int) -> tuple[int, str | None]:
        if MERCHANTS[terminal] != charge.merchant:
            return 404, "charge_not_found"
        if amount > charge.amount_fen - charge.refunded_fen:
            return 409, "refund_exceeds_charge"
        return 201, None

    # -- rules -----------------------------------------------------------------------------------
    @rule(amount=st.integers(1, 6_000), terminal=st.integers(0, 2))
    def charge(self, amount: int, terminal: int) -> None:
        key, body = self._key(), self._charge_body(amount)
        r = self.world.run(self._post(terminal, key, CHARGES, body))
        if amount <= self.balance:
            assert r.status_code == 201, r.text
        else:
            assert (r.status_code, problem_code(r)) == (402, "insufficient_balance")
        self._record(terminal, key, CHARGES, body, r)

    @precondition(lambda self: self.charges)
    @rule(data=st.data(), terminal=st.integers(0, 2))
    def refund(self, data: st.DataObject, terminal: int) -> None:
        charge_id = data.draw(st.sampled_from(sorted(self.charges)))
        charge = self.charges[charge_id]
        amount = data.draw(st.integers(1, charge.amount_fen))
        status, code = self._refund_expectation(terminal, charge, amount)
        key, path, body = self._key(), f"{CHARGES}/{charge_id}/refunds", {"amount_fen": amount}
        r = self.world.run(self._post(terminal, key, path, body))
        assert r.status_code == status, r.text
        if code:
            assert problem_code(r) == code
        self._record(terminal, key, path, body, r)

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def retry_same(self, data: st.DataObject) -> None:
        """A terminal that did not hear the answer sends the same request again: it gets that answer."""
        sent = data.draw(st.sampled_from(self.sent))
        r = self.world.run(self._post(sent.terminal, sent.key, sent.path, sent.body))
        assert r.status_code == sent.status, r.text
        if sent.status == 201:
            assert r.content == sent.content
        else:
            assert problem_code(r) == json.loads(sent.content)["code"]

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def retry_other_body(self, data: st.DataObject) -> None:
        sent = data.draw(st.sampled_from(self.sent))
        body = {**sent.body, "amount_fen": sent.body["amount_fen"] + 1}
        r = self.world.run(self._post(sent.terminal, sent.key, sent.path, body))
        assert (r.status_code, problem_code(r)) == (422, "idempotency_key_reused")

    @rule(amount=st.integers(1, 6_000), terminal=st.integers(0, 2))
    def concurrent_duplicates(self, amount: int, terminal: int) -> None:
        """The same request twice at once: it runs once; the other copy replays it or hears it is running."""
        key, body = self._key(), self._charge_body(amount)

        async def both() -> list[httpx.Response]:
            return list(await asyncio.gather(*(self._post(terminal, key, CHARGES, body) for _ in range(2))))

        answers = self.world.run(both())
        expected = 201 if amount <= self.balance else 402
        statuses = sorted(a.status_code for a in answers)
        assert statuses in ([expected, expected], sorted([expected, 409])), [a.text for a in answers]
        done = [a for a in answers if a.status_code == expected]
        if expected == 201 and len(done) == 2:
            assert done[0].content == done[1].content  # the second is the first's answer, replayed
        for a in answers:
            if a.status_code != 201:
                assert problem_code(a) == {402: "insufficient_balance", 409: "request_in_flight"}[a.status_code]
        self._record(terminal, key, CHARGES, body, done[0])

    @precondition(lambda self: self.charges)
    @rule(data=st.data())
    def concurrent_refunds(self, data: st.DataObject) -> None:
        """Two refunds of one charge at once, with different keys: never more than the charge in total."""
        charge_id = data.draw(st.sampled_from(sorted(self.charges)))
        charge = self.charges[charge_id]
        amounts = data.draw(st.lists(st.integers(1, charge.amount_fen), min_size=2, max_size=2))
        path = f"{CHARGES}/{charge_id}/refunds"
        sends = [(self._key(), {"amount_fen": a}) for a in amounts]
        till = MERCHANTS.index(charge.merchant)

        async def both() -> list[httpx.Response]:
            return list(await asyncio.gather(*(self._post(till, key, path, body) for key, body in sends)))

        left = charge.amount_fen - charge.refunded_fen
        answers = self.world.run(both())
        for (key, body), r in zip(sends, answers, strict=True):
            assert r.status_code in (201, 409), r.text
            if r.status_code == 409:
                assert problem_code(r) == "refund_exceeds_charge"
            self._record(till, key, path, body, r)
        granted = sum(body["amount_fen"] for (_, body), r in zip(sends, answers, strict=True) if r.status_code == 201)
        assert granted <= left
        # A refusal only when the other refund (or none) left too little for it.
        assert all(
            r.status_code == 201 or body["amount_fen"] > left - granted
            for (_, body), r in zip(sends, answers, strict=True)
        )

    @rule()
    def settle(self) -> None:
        """The batch settlement, between any two steps: it moves no cardholder's money."""
        self.world.run(self.world.services.medical.settle())

    # -- invariants ------------------------------------------------------------------------------
    @invariant()
    def ledger_is_sound(self) -> None:
        assert self.world.run(ledger_violations(self.world.pool)) == []
        assert self.world.run(self.world.services.medical.reconcile()) == []

    @invariant()
    def the_model_agrees(self) -> None:
        assert self.world.run(medical_balance(self.world.pool, self.person_id)) == self.balance
        rows = self.world.run(
            self.world.pool.fetch(
                "SELECT id::text, refunded_fen FROM medical_charges WHERE person_id = $1", self.person_id
            )
        )
        assert {r["id"]: r["refunded_fen"] for r in rows} == {k: c.refunded_fen for k, c in self.charges.items()}


async def test_the_ledger_holds_under_random_charges_refunds_retries_and_duplicates(
    settings: Settings, services: Services, tmp_path: Path
) -> None:
    # Each example signs a new cardholder in by SMS, all from this one client: more codes than one client
    # may ask for in an hour (OTP_PER_CLIENT_PER_HOUR), which is not what this test is about.
    async with concurrent_client(msgspec.structs.replace(settings, otp_per_client_per_hour=1_000)) as client:
        world = World(asyncio.get_running_loop(), client, services, tmp_path)
        for merchant in MERCHANTS:
            world.terminals.append(bearer(await services.auth.create_terminal(merchant)))
        machine = type("Machine", (LedgerMachine,), {"world": world})
        budget = hypothesis.settings(
            max_examples=30,
            stateful_step_count=20,
            deadline=None,
            database=None,
            suppress_health_check=[hypothesis.HealthCheck.too_slow],
        )
        await asyncio.to_thread(run_state_machine_as_test, machine, settings=budget)
        assert await ledger_violations(services.pool) == []
