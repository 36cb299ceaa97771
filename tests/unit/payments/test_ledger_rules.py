"""The medical ledger's pure rules: amounts, keys, request fingerprints, allocation rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.national_id import check_character
from core.records import RowError
from infra.config import Settings
from payments.disbursement.rules import yuan
from payments.ledger import rules
from payments.ledger.rules import CLAIM_GRACE, HELD_IDLE_LIMIT, KeyState, StoredKey, claim_dead, key_state

FIRST17 = "11010119450307231"
NID = FIRST17 + check_character(FIRST17)
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HASH = rules.request_hash("POST", "/v1/terminal/charges", {"amount_fen": 100})


@pytest.mark.parametrize(
    ("amount", "ok"), [(0, False), (-1, False), (1, True), (10_000_000, True), (10_000_001, False)]
)
def test_valid_amount(amount: int, ok: bool) -> None:
    assert rules.valid_amount(amount) is ok


@pytest.mark.parametrize(("fen", "text"), [(0, "0.00"), (5, "0.05"), (12345, "123.45"), (-250, "-2.50")])
def test_yuan(fen: int, text: str) -> None:
    assert yuan(fen) == text


def test_refundable() -> None:
    assert rules.refundable_fen(1000, 0) == 1000
    assert rules.refundable_fen(1000, 999) == 1


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("a", True),
        ("order-2026-05-01/0001", True),
        ("x" * 255, True),
        ("x" * 256, False),
        ("", False),
        (None, False),
        ("tab\there", False),
        ("café", False),
        ("新", False),
        ("line\n", False),
    ],
)
def test_idempotency_key_shape(key: str | None, ok: bool) -> None:
    assert rules.valid_idempotency_key(key) is ok


def test_canonical_json_ignores_order_and_spacing() -> None:
    assert rules.canonical_json({"b": 1, "a": "药"}) == rules.canonical_json({"a": "药", "b": 1})
    assert rules.canonical_json({"b": 1, "a": "药"}) == '{"a":"药","b":1}'.encode()


def test_request_hash_binds_method_path_and_body() -> None:
    body = {"qr_token": "t", "amount_fen": 100, "description": "x"}
    same = rules.request_hash("post", "/v1/terminal/charges", dict(reversed(list(body.items()))))
    assert rules.request_hash("POST", "/v1/terminal/charges", body) == same
    assert len(same) == 32
    others = {
        rules.request_hash("PUT", "/v1/terminal/charges", body),
        rules.request_hash("POST", "/v1/terminal/charges/x/refunds", body),
        rules.request_hash("POST", "/v1/terminal/charges", {**body, "amount_fen": 101}),
    }
    assert same not in others
    assert len(others) == 3


@given(st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5)), max_size=4))
def test_canonical_json_round_trips(body: dict[str, object]) -> None:
    assert json.loads(rules.canonical_json(body)) == body


def _stored(**overrides: object) -> StoredKey:
    values: dict[str, object] = {
        "request_hash": HASH,
        "answered": False,
        "locked_at": NOW - timedelta(seconds=1),
        "expires_at": NOW + timedelta(hours=23),
        "held": False,
    }
    values.update(overrides)
    return StoredKey(**values)  # type: ignore[arg-type]


def test_key_state_matrix() -> None:
    other = b"\x00" * 32
    assert key_state(_stored(), HASH, NOW) is KeyState.IN_FLIGHT  # just claimed: its request takes hold of it
    assert key_state(_stored(held=True), HASH, NOW) is KeyState.IN_FLIGHT
    assert key_state(_stored(answered=True, locked_at=None), HASH, NOW) is KeyState.ANSWERED
    assert key_state(_stored(answered=True, locked_at=None), other, NOW) is KeyState.REUSED
    assert key_state(_stored(), other, NOW) is KeyState.REUSED  # reuse is told even while in flight
    dead = _stored(locked_at=NOW - CLAIM_GRACE)
    assert key_state(dead, HASH, NOW) is KeyState.TAKE_OVER
    assert key_state(dead, other, NOW) is KeyState.REUSED  # never someone else's request
    # An expired key is forgotten, whatever it held.
    expired = _stored(answered=True, locked_at=None, expires_at=NOW)
    assert key_state(expired, other, NOW) is KeyState.TAKE_OVER
    assert key_state(expired, HASH, NOW) is KeyState.TAKE_OVER


@pytest.mark.parametrize("age_s", [0, 1, 1.999])
def test_a_claim_within_the_grace_is_its_live_request_about_to_hold_it(age_s: float) -> None:
    assert not claim_dead(_stored(locked_at=NOW - timedelta(seconds=age_s)), NOW)


@pytest.mark.parametrize("age_s", [2, 3, 59, 3600])
def test_an_unheld_claim_past_the_grace_is_dead(age_s: float) -> None:
    assert claim_dead(_stored(locked_at=NOW - timedelta(seconds=age_s)), NOW)


@pytest.mark.parametrize("age_s", [0, 2, 59, 61, 3600, 23 * 3600])
def test_a_held_claim_is_never_dead_however_old(age_s: float) -> None:
    """A live request, however slow, keeps its claim: taking it over could charge twice."""
    stored = _stored(locked_at=NOW - timedelta(seconds=age_s), held=True)
    assert not claim_dead(stored, NOW)
    assert key_state(stored, HASH, NOW) is KeyState.IN_FLIGHT


def test_an_answer_is_never_a_dead_claim() -> None:
    assert not claim_dead(_stored(answered=True, locked_at=None), NOW)


def test_a_dead_claim_is_taken_over_well_within_a_qr_code_lifetime() -> None:
    """A retry after the claiming process died completes within seconds: the grace, or the idle
    limit for a client that vanished without closing its connection, leave most of the code's life."""
    ttl = next(f.default for f in msgspec.structs.fields(Settings) if f.name == "qr_token_ttl_s")
    qr_lifetime = timedelta(seconds=ttl)
    assert qr_lifetime == timedelta(seconds=60)
    assert timedelta(seconds=5) >= CLAIM_GRACE
    assert qr_lifetime / 4 >= CLAIM_GRACE + HELD_IDLE_LIMIT


def test_allocation_rows_csv() -> None:
    text = "\n".join(
        [
            "national_id,year,amount_fen",
            f"{NID},2026,200000",
            f"{NID.lower()} ,2025, 150000",  # normalised: the x check character, spaces
            "110101194503072310,2026,100",  # wrong check digit
            f"{NID},1999,100",
            f"{NID},2026,0",
            f"{NID},2026,-5",
            f"{NID},2026,12.5",
            f"{NID},2026,10000001",
            f"{NID},twenty,100",
            f"{NID},2026,100,extra",
        ]
    )
    rows, errors = rules.parse_allocations(text, "csv")
    assert [(r.line, r.year, r.amount_fen) for r in rows] == [(2, 2026, 200000), (3, 2025, 150000)]
    assert rows[1].national_id == NID
    assert [(e.line, e.field) for e in errors] == [
        (4, "national_id"),
        (5, "year"),
        (6, "amount_fen"),
        (7, "amount_fen"),
        (8, "amount_fen"),
        (9, "amount_fen"),
        (10, "year"),
        (11, "-"),
    ]


def test_allocation_rows_csv_header() -> None:
    rows, errors = rules.parse_allocations("national_id,amount\n", "csv")
    assert rows == []
    assert errors == [
        RowError(1, "year", "column is missing from the header"),
        RowError(1, "amount_fen", "column is missing from the header"),
    ]


def test_allocation_rows_jsonl() -> None:
    lines = [
        json.dumps({"national_id": NID, "year": 2026, "amount_fen": 200000}),
        "",
        json.dumps({"national_id": NID, "year": 2026, "amount_fen": 12.0}),
        json.dumps({"national_id": NID, "year": 2026, "amount_fen": True}),
        json.dumps({"national_id": NID, "year": "2026", "amount_fen": "300"}),
        "{broken",
        json.dumps([1, 2]),
        json.dumps({"year": 2026, "amount_fen": 5}),
    ]
    rows, errors = rules.parse_allocations("\n".join(lines), "jsonl")
    assert [(r.line, r.amount_fen) for r in rows] == [(1, 200000), (5, 300)]
    assert [(e.line, e.field) for e in errors] == [
        (3, "amount_fen"),
        (4, "amount_fen"),
        (6, "-"),
        (7, "-"),
        (8, "national_id"),
    ]
    assert errors[-1].reason == "is required"
