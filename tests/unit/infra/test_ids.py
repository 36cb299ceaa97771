"""UUIDv7s drawn in the process."""

from __future__ import annotations

import time
import uuid

from infra.ids import uuid7_texts


def test_uuid7s_are_version_7_of_the_rfc_variant_distinct_and_increasing() -> None:
    before = time.time_ns() // 1_000_000
    texts = uuid7_texts(20_000)
    after = time.time_ns() // 1_000_000
    ids = [uuid.UUID(t) for t in texts]
    assert len(set(ids)) == 20_000
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids)
    assert all(before <= i.int >> 80 <= after for i in ids)  # the first 48 bits: Unix time in ms
    time.sleep(0.002)
    assert uuid.UUID(uuid7_texts(1)[0]) > ids[-1]  # a later millisecond: a later id


def test_no_uuid7_asked_none_given() -> None:
    assert uuid7_texts(0) == []
