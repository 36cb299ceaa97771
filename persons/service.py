"""Importing persons at the size of a city: a file streams through the pure checks into a staging
table in batches (COPY), then merges into persons, pensions and cards batch by batch in SQL.

Every batch commits with the import's progress (person_imports), so an import killed at any point
and run again on the same file goes on after its last batch, and ends with the totals and the
per-line report of one clean run. See docs/cards.md#importing-persons.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import asyncpg
from PIL import Image, UnidentifiedImageError

from cards.numbers import card_number
from certification.service import ENROLL_JOB
from core.records import Batch, PersonRecord, RowError, RowProgress, batches, detect_format, person_rows
from infra import audit, jobs
from infra.crypto import FieldCipher, lookup_hash, mask_account, mask_national_id
from infra.db import UnitOfWork, unit_of_work
from infra.storage import ObjectStorage
from persons import repository as repo

_PHOTO_TYPES = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png")}
_MAX_PHOTO_BYTES = 10 * 1024 * 1024
# Of the time a line takes, loading (read, check, encrypt, COPY) is about this share and the merge the
# rest (bench.import_persons): the progress display counts a line that far when it is staged.
LOAD_SHARE = 0.75
_ACCOUNT_CONTEXT = "pension_entitlements.bank_account"


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    import_id: uuid.UUID | None = None
    resumed: bool = False  # an earlier run of the same file had been cut short; this one finished it


def fingerprint(chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """The SHA-256 and the line count of a file given in chunks; UnicodeDecodeError unless it is
    UTF-8 (found before anything lands, rather than half-way through)."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    last = b""
    for chunk in chunks:
        digest.update(chunk)
        decoder.decode(chunk)
        lines += chunk.count(b"\n")
        last = chunk
    decoder.decode(b"", final=True)
    return digest.digest(), lines + (1 if last and not last.endswith(b"\n") else 0)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def _open_text(path: Path, fmt: str) -> IO[str]:
    # csv reads its own line endings (a quoted field may hold a newline); JSON lines need them made one.
    return path.open(encoding="utf-8-sig", newline="" if fmt == "csv" else None)


def account_hash(key: bytes, account: str) -> bytes:
    """A keyed hash of a bank account: a changed account is told without decrypting the new one."""
    return lookup_hash(key, f"{_ACCOUNT_CONTEXT}:{account}")


@dataclass
class _Prepared:
    rows: list[repo.StagedRow]
    with_photos: list[PersonRecord]  # sealed once their photo is stored (I/O, in the event loop)
    errors: list[RowError]
    through: int


class PersonImporter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        storage: ObjectStorage,
        cipher: FieldCipher,
        lookup_key: bytes,
        batch: int,
    ) -> None:
        self._pool = pool
        self._storage = storage
        self._cipher = cipher
        self._lookup_key = lookup_key
        self._batch = batch  # lines per transaction, staging and merging (IMPORT_BATCH)

    async def import_file(self, path: Path, actor: str, progress: RowProgress | None = None) -> ImportReport:
        """Land every good row of a CSV or JSON-lines file; `actor` is who the audit log names. The same
        file (by content) run again while an earlier run of it is unfinished resumes that run."""
        fmt = detect_format(path.name)
        sha256, lines = await asyncio.to_thread(fingerprint, _file_chunks(path))
        run, fresh = await repo.start_import(self._pool, sha256, path.name, lines, actor)
        resumed = not fresh and (run.loaded_through > 0 or run.state != "loading")

        def show(loaded: int, merged: int) -> None:
            if progress:
                progress(round(LOAD_SHARE * loaded + (1 - LOAD_SHARE) * merged), lines)

        if await repo.staging_lost(self._pool, run):
            async with unit_of_work(self._pool) as uow:
                run = await repo.restage(uow, run)
        if run.state == "loading":
            run = await self._load(path, fmt, run, show)
            async with unit_of_work(self._pool) as uow:
                await repo.drop_superseded(uow, run)
        await self._merge(run, path.name, actor, show)
        totals = await repo.totals(self._pool, run.id)
        return ImportReport(
            totals.created,
            totals.updated,
            totals.unchanged,
            [RowError(*e) for e in totals.errors],
            run.id,
            resumed,
        )

    # -- loading -----------------------------------------------------------------------------------
    async def _load(
        self, path: Path, fmt: str, run: repo.ImportRun, show: Callable[[int, int], None]
    ) -> repo.ImportRun:
        """Check and stage every line after the last staged one; the run as loaded."""
        through = run.loaded_through
        with await asyncio.to_thread(_open_text, path, fmt) as text:
            pending = batches(person_rows(text, fmt, after=through), self._batch)

            def prepare() -> _Prepared | None:
                batch = next(pending, None)
                return None if batch is None else self._prepare(run.id, batch)

            # The next batch is read, checked and encrypted in a thread while this one is copied and
            # committed: PostgreSQL's work overlaps Python's.
            ahead = asyncio.ensure_future(asyncio.to_thread(prepare))
            try:
                while (ready := await ahead) is not None:
                    ahead = asyncio.ensure_future(asyncio.to_thread(prepare))
                    rows, errors = ready.rows, list(ready.errors)
                    for record in ready.with_photos:
                        try:
                            photo_key = await self._store_photo(record, path.parent)
                        except ValueError as exc:
                            errors.append(RowError(record.line, "reference_photo", str(exc)))
                        else:
                            rows.append(self._seal(run.id, record, photo_key))
                    async with unit_of_work(self._pool) as uow:
                        await repo.stage(uow, run.id, through, ready.through, rows, _numbered(errors))
                    through = ready.through
                    show(through, run.merged_through)
            finally:
                # Never leave the reader thread on a closed file, nor its exception unretrieved.
                await asyncio.gather(ahead, return_exceptions=True)
        return run._replace(state="merging", loaded_through=through)

    def _prepare(self, import_id: uuid.UUID, batch: Batch) -> _Prepared:
        rows: list[repo.StagedRow] = []
        with_photos: list[PersonRecord] = []
        for record in batch.records:
            if record.reference_photo is None:
                rows.append(self._seal(import_id, record, None))
            else:
                with_photos.append(record)
        return _Prepared(rows, with_photos, batch.errors, batch.through)

    def _seal(self, import_id: uuid.UUID, record: PersonRecord, photo_key: str | None) -> repo.StagedRow:
        """The staged row: the national ID and the account encrypted and hashed, never in clear."""
        national_id, pension = record.national_id, record.pension
        person = (
            import_id,
            record.line,
            lookup_hash(self._lookup_key, national_id),
            self._cipher.encrypt_text(national_id, "persons.national_id"),
            mask_national_id(national_id),
            record.name,
            record.birth_date,
            record.phone,
            record.region,
            record.locale,
            photo_key,
        )
        if pension is None:
            return (*person, None, None, None, None, None)
        account = pension.bank_account
        return (
            *person,
            pension.monthly_amount_fen,
            self._cipher.encrypt_text(account, _ACCOUNT_CONTEXT),
            mask_account(account),
            account_hash(self._lookup_key, account),
            pension.start_month,
        )

    # -- photos ------------------------------------------------------------------------------------
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

    # -- merging -----------------------------------------------------------------------------------
    async def _merge(self, run: repo.ImportRun, file_name: str, actor: str, show: Callable[[int, int], None]) -> None:
        """Merge the staged lines batch by batch, after the last merged one; then complete the run."""
        first = run.merged_through + 1
        while first <= run.loaded_through:
            last = min(first + self._batch - 1, run.loaded_through)
            async with unit_of_work(self._pool) as uow:
                await repo.lock_merge(uow, run.id, first - 1)
                moved = [
                    r["line"]
                    for r in await repo.staged_accounts(uow, run.id, first, last)
                    if account_hash(
                        self._lookup_key, self._cipher.decrypt_text(r["bank_account_enc"], _ACCOUNT_CONTEXT)
                    )
                    != r["bank_account_hash"]
                ]
                counts = await repo.classify(uow, run.id, first, last, moved)
                numbers = await repo.card_sequence_numbers(uow, counts.cards) if counts.cards else []
                await repo.write_merge(uow, [card_number(n) for n in numbers])
                await self._audit_batch(uow, run.id, file_name, actor, first, last, counts)
                await repo.merged(uow, run.id, last, counts)
            show(run.loaded_through, last)
            first = last + 1
        async with unit_of_work(self._pool) as uow:
            done = await repo.complete(uow, run.id)
            await audit.record(uow, actor, "person.import_completed", f"person_import:{run.id}", dict(done))

    async def _audit_batch(
        self,
        uow: UnitOfWork,
        import_id: uuid.UUID,
        file_name: str,
        actor: str,
        first: int,
        last: int,
        counts: repo.MergeCounts,
    ) -> None:
        """One entry for the batch (its lines and counts: the persons it created are named by it), one
        per person it changed (the fields, as a change to a bank account must be traceable to who made
        it), and the face worker told of each new reference photo."""
        if not counts.created + counts.updated + counts.unchanged:
            return
        changes = await repo.merged_changes(uow)
        await audit.record_many(
            uow,
            actor,
            "person.updated",
            [
                (
                    f"person:{c['person_id']}",
                    {"masked_national_id": c["national_id_masked"], "fields": c["changed"], "line": c["line"]},
                )
                for c in changes
                if not c["is_new"]
            ],
        )
        await audit.record(
            uow,
            actor,
            "person.import_batch",
            f"person_import:{import_id}",
            {"file": file_name, "lines": [first, last], **counts._asdict()},
        )
        for c in changes:
            if "reference_photo" in c["changed"]:
                # The face worker enrols the new reference now, not during the pensioner's first check.
                person_id, key = c["person_id"], c["reference_photo_key"]
                await jobs.enqueue(uow, ENROLL_JOB, f"{person_id} {key}".encode(), f"enroll:{person_id}:{key}")


def _numbered(errors: list[RowError]) -> list[tuple[int, int, str, str]]:
    """(line, n, field, reason): n keeps a line's errors in the order they were found."""
    out: list[tuple[int, int, str, str]] = []
    for e in sorted(errors, key=lambda e: e.line):  # stable: a line's errors keep their order
        n = out[-1][1] + 1 if out and out[-1][0] == e.line else 0
        out.append((e.line, n, e.field, e.reason))
    return out


def _read_photo(path: Path) -> bytes | None:
    """The file's bytes, or None when there is no such file (`base / absolute` is the absolute path)."""
    return path.read_bytes() if path.is_file() else None
