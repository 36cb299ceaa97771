"""What the face worker needs from certification: the port it calls, and the work item it gets.

certification.service.CertificationService implements it; liveness imports nothing of the domains.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from liveness.model import Analysis, EarlierSubmission, Embedding, Enrollment


@dataclass(frozen=True)
class WorkItem:
    """A check taken for analysis by the worker."""

    check_id: uuid.UUID
    person_id: uuid.UUID
    actions: tuple[str, ...]
    media_kind: str
    media_keys: tuple[str, ...]
    attempts: int
    reference_photo_key: str | None
    request_id: str | None


class CertificationPort(Protocol):
    """The certification side of a face check: read the check and its media, write the result once."""

    # enrolment of a reference photo
    async def reference_photo(self, key: str) -> bytes: ...
    async def enrolled_reference(self, person_id: uuid.UUID, photo_key: str) -> Enrollment | None: ...
    async def save_enrollment(self, person_id: uuid.UUID, photo_key: str, enrollment: Enrollment) -> None: ...

    # one check's analysis
    async def start_analysis(self, check_id: uuid.UUID, person_id: uuid.UUID | None = None) -> WorkItem | None: ...
    async def load_media(self, item: WorkItem) -> tuple[bytes, ...]: ...
    async def earlier_submissions(self, item: WorkItem) -> list[EarlierSubmission]: ...
    async def replay_candidates(self, item: WorkItem, analysis: Analysis) -> list[EarlierSubmission]: ...
    async def face_collision(self, item: WorkItem, embedding: Embedding | None) -> uuid.UUID | None: ...
    async def store_review_frames(self, item: WorkItem, frames: tuple[bytes, ...]) -> list[str]: ...
    async def record_analysis(self, item: WorkItem, analysis: Analysis, review_frame_keys: list[str]) -> str | None: ...
    async def retry_later(self, item: WorkItem, delay: timedelta) -> None: ...
    async def give_up(self, item: WorkItem) -> str | None: ...
