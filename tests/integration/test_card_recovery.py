"""A stolen phone cannot undo its owner's loss report (issue 16, item 1): the report ends every other
session of the person, and cancelling it takes a new code sent to the registered phone plus a face
check passed since the report, or an operator who vouched for the person with a reason."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.factories import (
    bearer,
    last_code,
    mint_qr,
    problem_code,
    record_passed_check,
    recover_card,
    sample_person,
    sign_in,
)

LOSS = "/v1/card/loss"
RECOVERY = "/v1/card/recovery"
RECOVERY_CODE = "/v1/card/recovery/code"
APPROVALS = "/v1/admin/card-recoveries"
VERIFY_QR = "/v1/terminal/qr/verify"


async def _new_phone(client: Any, pool: asyncpg.Pool, holder: dict[str, Any]) -> dict[str, str]:
    """The holder signed in again with the same number on another handset."""
    tokens = await sign_in(client, pool, holder["person"].phone, device_id="new-phone-0002")
    return bearer(tokens["access_token"])


async def test_a_loss_report_ends_every_other_session_of_the_person(
    client: Any, pool: asyncpg.Pool, cardholder: dict[str, Any], terminal_headers: dict[str, str]
) -> None:
    stolen = cardholder["headers"]
    minted_before = await mint_qr(client, stolen)
    owner = await _new_phone(client, pool, cardholder)

    r = await client.post(LOSS, headers=owner)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "reported_lost"

    # The stolen handset's access token, refresh token and QR code stop working at once.
    r = await client.get("/v1/card", headers=stolen)
    assert (r.status_code, problem_code(r)) == (401, "token_invalid")
    r = await client.post("/v1/auth/refresh", json={"refresh_token": cardholder["tokens"]["refresh_token"]})
    assert (r.status_code, problem_code(r)) == (401, "refresh_invalid")
    assert (await client.post(RECOVERY, json={"code": "123456"}, headers=stolen)).status_code == 401
    assert (await client.post(VERIFY_QR, json={"token": minted_before}, headers=terminal_headers)).status_code == 409
    # The phone that reported the loss stays signed in.
    r = await client.get("/v1/card", headers=owner)
    assert (r.status_code, r.json()["status"]) == (200, "reported_lost")
    ended = await pool.fetchrow("SELECT subject, details FROM audit_log WHERE action = 'auth.sessions_ended'")
    assert ended["details"] == {"reason": "card_reported_lost", "sessions": 1}
    assert await pool.fetchval("SELECT count(*) FROM sessions WHERE revoke_reason = 'card_reported_lost'") == 1


async def test_the_stolen_phone_gets_no_more_pushes_and_a_signed_out_one_neither(
    client: Any, pool: asyncpg.Pool, cardholder: dict[str, Any]
) -> None:
    async def register(headers: dict[str, str], token: str) -> str:
        body = {"push_token": token, "platform": "android", "app_version": "3.2.1"}
        r = await client.post("/v1/devices", json=body, headers=headers)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def state(device: str) -> Any:
        return pool.fetchval("SELECT deactivated_reason FROM devices WHERE id = $1::uuid", device)

    stolen = await register(cardholder["headers"], "fcm-stolen")
    owner_headers = await _new_phone(client, pool, cardholder)
    owner = await register(owner_headers, "fcm-owner")
    assert (await client.post(LOSS, headers=owner_headers)).status_code == 200
    # Notices about the loss (and the person's money) must not reach the thief's handset.
    assert (await state(stolen), await state(owner)) == ("card_reported_lost", None)

    assert (await client.post("/v1/auth/logout", headers=owner_headers)).status_code == 204
    assert await state(owner) == "logout"
    # Signed in again, the phone registers again and gets pushes again.
    again = await _new_phone(client, pool, cardholder)
    assert await register(again, "fcm-owner") == owner
    assert await state(owner) is None


async def test_the_stolen_phone_signed_in_again_cannot_cancel_the_report(
    client: Any, pool: asyncpg.Pool, cardholder: dict[str, Any]
) -> None:
    phone = cardholder["person"].phone
    assert (await client.post(LOSS, headers=await _new_phone(client, pool, cardholder))).status_code == 200
    # The thief has the handset with its SIM: a new sign-in by SMS works, cancelling the report does not.
    thief = bearer((await sign_in(client, pool, phone, device_id="device-0001"))["access_token"])
    r = await client.post(RECOVERY_CODE, headers={**thief, "Accept-Language": "en"})
    assert (r.status_code, problem_code(r)) == (409, "recovery_proof_required")
    assert "face certification" in r.json()["detail"]
    r = await client.post(RECOVERY, json={"code": await last_code(pool, phone)}, headers=thief)
    assert (r.status_code, problem_code(r)) == (409, "recovery_proof_required")
    r = await client.post("/v1/card/qr", headers=thief)
    assert (r.status_code, problem_code(r)) == (409, "card_not_active")
    assert await pool.fetchval("SELECT status FROM cards") == "reported_lost"


async def test_recovery_takes_a_new_code_and_a_face_check_passed_since_the_loss(
    client: Any, pool: asyncpg.Pool, cardholder: dict[str, Any], terminal_headers: dict[str, str]
) -> None:
    phone, headers = cardholder["person"].phone, cardholder["headers"]
    assert (await client.post(LOSS, headers=headers)).status_code == 200
    # The face check that activated the card was passed before the loss: it proves nothing now.
    r = await client.post(RECOVERY_CODE, headers=headers)
    assert (r.status_code, problem_code(r)) == (409, "recovery_proof_required")
    await record_passed_check(pool, phone)

    # A sign-in code is not a recovery code.
    assert (await client.post("/v1/auth/otp", json={"phone": phone})).status_code == 202
    r = await client.post(RECOVERY, json={"code": await last_code(pool, phone)}, headers=headers)
    assert (r.status_code, problem_code(r)) == (400, "otp_expired")

    r = await client.post(RECOVERY_CODE, headers=headers)
    assert (r.status_code, r.json()) == (202, {"expires_in": 300})
    code = await last_code(pool, phone)
    sms = await pool.fetchval("SELECT body FROM dev_sms_messages WHERE phone = $1 ORDER BY id DESC LIMIT 1", phone)
    assert "解除社保卡挂失" in sms  # it says what the code would do
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    r = await client.post(RECOVERY, json={"code": wrong}, headers=headers)
    assert (r.status_code, problem_code(r)) == (400, "otp_invalid")
    # ...nor does a recovery code sign anyone in.
    r = await client.post(
        "/v1/auth/otp/verify", json={"phone": phone, "code": code, "device_id": "device-0003", "platform": "ios"}
    )
    assert r.status_code == 400

    r = await client.post(RECOVERY, json={"code": code}, headers=headers)
    assert (r.status_code, r.json()["status"]) == (200, "active"), r.text
    token = await mint_qr(client, headers)
    assert (await client.post(VERIFY_QR, json={"token": token}, headers=terminal_headers)).status_code == 200
    recovered = await pool.fetchval("SELECT details FROM audit_log WHERE action = 'card.recovered'")
    assert recovered == {"from": "reported_lost", "to": "active", "proof": "face_check"}
    assert (await client.post(RECOVERY, json={"code": code}, headers=headers)).status_code == 200  # retry: done


async def test_only_a_code_sent_after_the_loss_report_counts(
    client: Any, pool: asyncpg.Pool, cardholder: dict[str, Any]
) -> None:
    phone, headers = cardholder["person"].phone, cardholder["headers"]
    assert (await client.post(LOSS, headers=headers)).status_code == 200
    await record_passed_check(pool, phone)
    assert (await client.post(RECOVERY_CODE, headers=headers)).status_code == 202
    code = await last_code(pool, phone)
    await pool.execute(
        "UPDATE otp_codes SET created_at = created_at - interval '1 day' WHERE purpose = 'card_recovery'"
    )
    r = await client.post(RECOVERY, json={"code": code}, headers=headers)
    assert (r.status_code, problem_code(r)) == (400, "otp_expired")
    assert await pool.fetchval("SELECT status FROM cards") == "reported_lost"


async def test_an_operator_vouches_for_the_person_with_a_reason(
    client: Any, pool: asyncpg.Pool, cardholder: dict[str, Any], operator_headers: dict[str, str]
) -> None:
    person, headers = cardholder["person"], cardholder["headers"]
    body = {"national_id": person.national_id, "reason": "came to the Dongcheng office with the ID card"}
    r = await client.post(APPROVALS, json=body, headers=operator_headers)
    assert (r.status_code, problem_code(r)) == (409, "card_not_lost")
    assert (await client.post(LOSS, headers=headers)).status_code == 200

    assert (await client.post(APPROVALS, json=body, headers=headers)).status_code == 403  # not the holder's call
    for reason in ("", "   ", " a "):
        r = await client.post(APPROVALS, json={**body, "reason": reason}, headers=operator_headers)
        assert r.status_code == 400, reason
    r = await client.post(
        APPROVALS, json={**body, "national_id": sample_person().national_id}, headers=operator_headers
    )
    assert (r.status_code, problem_code(r)) == (404, "person_not_found")

    r = await client.post(APPROVALS, json=body, headers=operator_headers)
    assert r.status_code == 200, r.text
    approval = r.json()
    assert approval["card_status"] == "reported_lost"  # the holder still confirms with a new code
    assert approval["masked_national_id"] == cardholder["card"]["masked_national_id"]
    vouched = await pool.fetchrow("SELECT actor, details FROM audit_log WHERE action = 'card.recovery_approved'")
    assert vouched["details"]["reason"] == body["reason"]
    assert vouched["details"]["operator"] == "reviewer1"

    r = await recover_card(client, pool, person.phone, headers)
    assert (r.status_code, r.json()["status"]) == (200, "active"), r.text
    recovered = await pool.fetchval("SELECT details FROM audit_log WHERE action = 'card.recovered'")
    assert recovered["proof"] == "operator"
