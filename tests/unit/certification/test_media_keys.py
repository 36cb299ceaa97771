"""Where biometric objects are kept, and when one that no check names may be swept."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from certification import rules
from infra.config import Settings

NOW = datetime(2026, 5, 1, 3, 17, tzinfo=UTC)
PERSON, CHALLENGE, CHECK = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def test_every_biometric_key_lies_under_a_swept_prefix() -> None:
    keys = [rules.upload_prefix(PERSON, CHALLENGE) + "video", rules.review_frame_key(PERSON, CHECK, 7)]
    assert all(key.startswith(rules.BIOMETRIC_PREFIXES) for key in keys)
    assert rules.upload_prefix(PERSON, CHALLENGE) == f"uploads/{PERSON}/{CHALLENGE}/"
    assert rules.review_frame_key(PERSON, CHECK, 7) == f"reviews/{PERSON}/{CHECK}/frame-07.jpg"


def test_a_review_frame_names_its_check_folder() -> None:
    assert rules.review_folder_check(rules.review_frame_key(PERSON, CHECK, 0)) == CHECK


def test_every_biometric_key_names_its_persons_folder() -> None:
    """The sweep reads only the shards of the persons whose folders it found objects in."""
    assert rules.folder_person(rules.review_frame_key(PERSON, CHECK, 0)) == PERSON
    assert rules.folder_person(rules.upload_prefix(PERSON, CHALLENGE) + "video") == PERSON
    assert rules.folder_person("uploads/not-a-person/x/video") is None
    assert rules.folder_person(f"elsewhere/{PERSON}/x") is None


@pytest.mark.parametrize(
    "key",
    [
        f"uploads/{PERSON}/{CHECK}/frame-00.jpg",  # an upload belongs to a challenge, not a check's folder
        f"reviews/{PERSON}/not-a-uuid/frame-00.jpg",
        f"reviews/{PERSON}/{CHECK}/deeper/frame-00.jpg",
        f"reviews/{CHECK}",
        "reviews/",
        "",
    ],
)
def test_other_keys_name_no_check_folder(key: str) -> None:
    assert rules.review_folder_check(key) is None


@pytest.mark.parametrize(
    ("age", "swept"),
    [
        (timedelta(0), False),
        (timedelta(minutes=2), False),  # a presigned upload whose challenge just expired
        (rules.ORPHAN_GRACE - timedelta(seconds=1), False),
        (rules.ORPHAN_GRACE, True),
        (timedelta(days=2), True),
    ],
)
def test_only_objects_older_than_the_grace_are_swept(age: timedelta, swept: bool) -> None:
    assert rules.past_grace(NOW - age, NOW) is swept


def test_the_grace_outlasts_an_upload_and_an_orphan_goes_long_before_the_retention_ends() -> None:
    default = {f.name: f.default for f in msgspec.structs.fields(Settings)}
    upload_window = timedelta(seconds=default["challenge_ttl_s"])
    assert 100 * upload_window <= rules.ORPHAN_GRACE
    nightly = timedelta(days=1)
    assert rules.ORPHAN_GRACE + nightly < timedelta(days=default["media_retention_days"]) / 10
