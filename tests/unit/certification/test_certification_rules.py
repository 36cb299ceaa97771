"""The certification rules and upload checks: pure functions, no I/O."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certification import rules
from certification.reasons import CODES, explain
from certification.uploads import UPLOAD_MAX_BYTES, check_frames, check_video, video_type
from core.errors import AppError
from liveness.model import Reason

ACTIONS = ("blink", "turn_left", "turn_right", "open_mouth")


@given(st.integers(min_value=0, max_value=2**32), st.integers(1, 4), st.integers(1, 4))
def test_draw_is_distinct_actions_within_the_policy(seed: int, low: int, high: int) -> None:
    low, high = min(low, high), max(low, high)
    drawn = rules.draw_challenge(ACTIONS, low, high, random.Random(seed))
    assert low <= len(drawn) <= high
    assert len(set(drawn)) == len(drawn)
    assert set(drawn) <= set(ACTIONS)


def test_draw_covers_orders_and_the_assisted_policy() -> None:
    rng = random.Random(7)
    drawn = {rules.draw_challenge(ACTIONS, 2, 3, rng) for _ in range(2000)}
    assert ("blink", "turn_left") in drawn
    assert ("turn_left", "blink") in drawn
    assert len(drawn) == 12 - 2 + 24  # every order of 2 or 3 but blink and open mouth alone
    assert {rules.draw_challenge(("blink",), 1, 3, rng) for _ in range(20)} == {("blink",)}


def test_every_draw_of_two_or_more_holds_a_head_turn() -> None:
    rng = random.Random(11)
    for _ in range(500):
        drawn = rules.draw_challenge(ACTIONS, 2, 3, rng)
        assert {"turn_left", "turn_right"} & set(drawn)
    # Where the policy allows no turn (assisted mode), none is forced in.
    assert {rules.draw_challenge(("blink", "open_mouth"), 2, 2, rng) for _ in range(50)} == {
        ("blink", "open_mouth"),
        ("open_mouth", "blink"),
    }


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 11, 22), 12, date(2027, 11, 22)),
        (date(2028, 2, 29), 12, date(2029, 2, 28)),
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2026, 12, 15), 1, date(2027, 1, 15)),
    ],
)
def test_add_months(day: date, months: int, expected: date) -> None:
    assert rules.add_months(day, months) == expected


def test_a_pass_never_shortens_eligibility() -> None:
    assert rules.eligible_until(date(2026, 11, 22), None) == date(2027, 11, 22)
    assert rules.eligible_until(date(2026, 11, 22), date(2027, 1, 1)) == date(2027, 11, 22)
    assert rules.eligible_until(date(2026, 11, 22), date(2028, 1, 1)) == date(2028, 1, 1)


def test_the_failure_that_reaches_the_limit_goes_to_a_person() -> None:
    assert rules.final_status("failed", ["no_face"], 0, 3) == rules.Verdict("failed", ("no_face",))
    assert rules.final_status("failed", ["no_face"], 1, 3) == rules.Verdict("failed", ("no_face",))
    assert rules.final_status("failed", ["no_face"], 2, 3) == rules.Verdict(
        "needs_review", ("no_face", "repeated_failures")
    )
    assert rules.final_status("retry", ["too_dark"], 5, 3).status == "retry"  # quality is never a failure
    assert rules.final_status("passed", [], 2, 3).status == "passed"
    assert rules.attempts_left(2, 3) == 1
    assert rules.attempts_left(7, 3) == 0


def test_every_reason_has_text_and_advice_in_both_languages() -> None:
    for reason in Reason:
        assert reason.value in CODES, reason
    for code in CODES:
        for locale in ("zh-CN", "en"):
            shown = explain(code, locale)
            assert shown.text
            assert shown.advice
    assert explain("too_dark", "en").advice == "Move to a bright place and face the light."


def test_containers_are_recognised_by_their_bytes() -> None:
    assert video_type(b"\x00\x00\x00\x18ftypmp42\x00\x00") == "video/mp4"
    assert video_type(b"\x00\x00\x00\x14ftypqt  \x00\x00") == "video/quicktime"
    assert video_type(b"\x00\x00\x00\x08wide\x00\x00\x00\x00") == "video/quicktime"
    assert video_type(b"\x1a\x45\xdf\xa3\x01\x00\x00\x00\x00\x00\x00\x10") == "video/webm"
    assert video_type(b"GIF89a...........") is None
    assert video_type(b"short") is None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "upload_empty"),
        (b"hello world, not a video", "not_a_video"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "not_a_video"),
    ],
)
def test_bad_videos_are_named(data: bytes, code: str) -> None:
    with pytest.raises(AppError) as caught:
        check_video(data)
    assert caught.value.code == code


def test_frame_bursts() -> None:
    jpeg = b"\xff\xd8\xff\xe0" + b"\0" * 100
    check_frames([jpeg] * 5)
    check_frames([jpeg] * 30)
    for frames, code in (
        ([jpeg] * 4, "frames_count"),
        ([jpeg] * 31, "frames_count"),
        ([jpeg] * 4 + [b""], "upload_empty"),
        ([jpeg] * 4 + [b"GIF89a"], "not_jpeg"),
        ([b"\xff\xd8\xff" + b"\0" * (UPLOAD_MAX_BYTES // 5)] * 6, "upload_too_large"),
    ):
        with pytest.raises(AppError) as caught:
            check_frames(frames)
        assert caught.value.code == code


def test_a_pass_counts_on_chinas_calendar_day() -> None:
    # 06:00 in Beijing on 5 December is 22:00 UTC on the 4th: the pensioner's day is the 5th, for a face
    # pass as for a confirmation by data or in person.
    assert rules.day_in_china(datetime(2026, 12, 4, 22, 0, tzinfo=UTC)) == date(2026, 12, 5)
    assert rules.day_in_china(datetime(2026, 12, 4, 15, 59, tzinfo=UTC)) == date(2026, 12, 4)
