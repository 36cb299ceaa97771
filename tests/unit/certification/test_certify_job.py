"""The face worker's job names the check's person, so that the worker reads and writes one shard."""

from __future__ import annotations

import uuid

from certification.service import certify_job, certify_payload


def test_a_certify_job_names_the_person_and_the_check() -> None:
    person_id, check_id = uuid.uuid4(), uuid.uuid4()
    assert certify_job(certify_payload(person_id, check_id)) == (person_id, check_id)


def test_a_job_queued_before_names_the_check_alone() -> None:
    """Jobs already queued when this shipped carry the check's id only: the worker finds its person."""
    check_id = uuid.uuid4()
    assert certify_job(str(check_id).encode()) == (None, check_id)
