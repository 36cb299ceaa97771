"""Importing persons: each good row lands in its own transaction, with its audit entry."""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from PIL import Image, UnidentifiedImageError

from certification.service import ENROLL_JOB
from core.records import PersonRecord, RowError, RowProgress, detect_format, parse_import
from infra import audit, jobs
from infra.crypto import FieldCipher, lookup_hash, mask_account, mask_national_id
from infra.db import unit_of_work
from infra.storage import ObjectStorage
from persons import repository as repo

_PHOTO_TYPES = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png")}
_MAX_PHOTO_BYTES = 10 * 1024 * 1024


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)


class PersonImporter:
    def __init__(self, pool: asyncpg.Pool, storage: ObjectStorage, cipher: FieldCipher, lookup_key: bytes) -> None:
        self._pool = pool
        self._storage = storage
        self._cipher = cipher
        self._lookup_key = lookup_key

    async def import_file(self, path: Path, actor: str, progress: RowProgress | None = None) -> ImportReport:
        """Land every good row of a CSV or JSON-lines file; `actor` is who the audit log names."""
        text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
        records, errors = parse_import(text, detect_format(path.name))
        report = ImportReport(errors=list(errors))
        for done, record in enumerate(records, 1):
            try:
                photo_key = await self._store_photo(record, path.parent)
            except ValueError as exc:
                report.errors.append(RowError(record.line, "reference_photo", str(exc)))
            else:
                outcome = await self._land(record, photo_key, actor)
                setattr(report, outcome, getattr(report, outcome) + 1)
            if progress:
                progress(done, len(records))
        report.errors.sort(key=lambda e: e.line)
        return report

    async def _store_photo(self, record: PersonRecord, base: Path) -> str | None:
        if record.reference_photo is None:
            return None
        if record.reference_photo.startswith("s3://"):
            bucket, _, key = record.reference_photo[5:].partition("/")
            if bucket != self._storage.bucket or not key:
                raise ValueError(f"must be in the bucket {self._storage.bucket}")
            if not await asyncio.to_thread(self._storage.exists, key):
                raise ValueError("no such object in storage")
            return key
        data = await asyncio.to_thread(_read_photo, base / record.reference_photo)
        if data is None:
            raise ValueError(f"file not found: {record.reference_photo}")
        if len(data) > _MAX_PHOTO_BYTES:
            raise ValueError("is larger than 10 MB")
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
                kind = image.format or ""
        except (UnidentifiedImageError, OSError):
            raise ValueError("is not a readable image") from None
        if kind not in _PHOTO_TYPES:
            raise ValueError("must be a JPEG or PNG image")
        content_type, ext = _PHOTO_TYPES[kind]
        # Content-addressed: importing the same photo twice stores it once.
        key = f"reference-photos/{hashlib.sha256(data).hexdigest()}.{ext}"
        await asyncio.to_thread(self._storage.put_bytes, key, data, content_type)
        return key

    async def _land(self, record: PersonRecord, photo_key: str | None, actor: str) -> str:
        id_hash = lookup_hash(self._lookup_key, record.national_id)
        masked = mask_national_id(record.national_id)
        async with unit_of_work(self._pool) as uow:
            # Serialises concurrent imports of one national ID so they merge into one record.
            await uow.execute("SELECT pg_advisory_xact_lock(hashtextextended($1::bytea::text, 7))", id_hash)
            existing = await repo.find_by_national_id_hash(uow, id_hash)
            changed = self._changed_fields(existing, record, photo_key)
            if not changed:
                return "unchanged"
            person_id = await repo.upsert_person(
                uow,
                repo.PersonRow(
                    national_id_hash=id_hash,
                    national_id_enc=self._cipher.encrypt_text(record.national_id, "persons.national_id"),
                    national_id_masked=masked,
                    name=record.name,
                    birth_date=record.birth_date,
                    phone=record.phone,
                    region=record.region,
                    locale=record.locale,
                    reference_photo_key=photo_key,
                ),
            )
            if record.pension is not None:
                p = record.pension
                await repo.upsert_entitlement(
                    uow,
                    person_id,
                    p.monthly_amount_fen,
                    self._cipher.encrypt_text(p.bank_account, "pension_entitlements.bank_account"),
                    mask_account(p.bank_account),
                    p.start_month,
                )
            await repo.ensure_card(uow, person_id)
            if photo_key is not None and "reference_photo" in changed:
                # The face worker enrols the new reference now, not during the pensioner's first check.
                await jobs.enqueue(
                    uow, ENROLL_JOB, f"{person_id} {photo_key}".encode(), f"enroll:{person_id}:{photo_key}"
                )
            outcome = "created" if existing is None else "updated"
            await audit.record(
                uow,
                actor,
                f"person.{outcome}",
                f"person:{person_id}",
                {"masked_national_id": masked, "fields": changed, "line": record.line},
            )
        return outcome

    def _changed_fields(
        self, existing: asyncpg.Record | None, record: PersonRecord, photo_key: str | None
    ) -> list[str]:
        """The fields this record changes; for a new person (no existing row), every field it sets."""
        old = dict(existing) if existing is not None else {}
        changed = [
            name
            for name, new in (
                ("name", record.name),
                ("birth_date", record.birth_date),
                ("phone", record.phone),
                ("region", record.region),
                ("locale", record.locale),
            )
            if old.get(name) != new
        ]
        if photo_key is not None and photo_key != old.get("reference_photo_key"):
            changed.append("reference_photo")
        if record.pension is not None:
            p = record.pension
            if old.get("monthly_amount_fen") != p.monthly_amount_fen:
                changed.append("pension.monthly_amount")
            stored = old.get("bank_account_enc")
            if (
                stored is None
                or self._cipher.decrypt_text(stored, "pension_entitlements.bank_account") != p.bank_account
            ):
                changed.append("pension.bank_account")
            if old.get("start_month") != p.start_month:
                changed.append("pension.start_month")
        return changed


def _read_photo(path: Path) -> bytes | None:
    """The file's bytes, or None when there is no such file (`base / absolute` is the absolute path)."""
    return path.read_bytes() if path.is_file() else None
