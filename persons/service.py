"""Importing persons at the size of a city: a file streams through the pure checks in batches; each
batch is copied (COPY) into a temporary table and merged into persons, pensions and cards with
set-based SQL, in one transaction with the import's progress.

An import killed at any point and run again on the same file goes on after its last batch, and ends
with the totals and the per-line report of one clean run. A national ID the file holds more than once
(found by a first read of the file) is held back to the end, where its last good row lands: one
person, one record, whichever batches its rows fall in. See docs/cards.md#importing-persons.
"""

from __future__ import annotations

import array
import asyncio
import codecs
import gc
import hashlib
import io
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import asyncpg
import numpy as np
from PIL import Image, UnidentifiedImageError

from cards.numbers import card_numbers
from certification.service import ENROLL_JOB
from core.records import (
    Batch,
    PersonRecord,
    RowError,
    RowProgress,
    batches,
    detect_format,
    person_ids,
    person_rows,
)
from infra import audit, jobs
from infra.crypto import FieldCipher, lookup_hash, lookup_hashes, mask_account, mask_national_id
from infra.db import UnitOfWork, unit_of_work
from infra.ids import uuid7_texts
from infra.storage import ObjectStorage
from persons import repository as repo

_PHOTO_TYPES = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png")}
_MAX_PHOTO_BYTES = 10 * 1024 * 1024
_ACCOUNT_CONTEXT = "pension_entitlements.bank_account"
_HELD_BACK = "held back (repeated national IDs)"


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


def repeated_ids(keys: Iterator[str]) -> frozenset[int]:
    """The (process-local) hashes of the keys that occur more than once. 8 bytes a key while counting,
    whatever the file's size; a collision only holds back a row that need not be."""
    hashes = np.frombuffer(array.array("q", (hash(k) for k in keys)), dtype=np.int64)
    values, counts = np.unique(hashes, return_counts=True)
    return frozenset(int(v) for v in values[counts > 1])


# How soon the event loop gets the GIL back from the thread preparing the next batch (CPython's
# default: 5 ms). It wakes a few hundred times a batch (each answer, each chunk of the COPY) and
# PostgreSQL waits on it: at 5 ms a fifth of the import's time; below 0.5 ms no faster.
_SWITCH_INTERVAL_S = 0.0005


@contextmanager
def _bulk_work() -> Iterator[None]:
    """While the batches run: no cyclic garbage collection, and the GIL handed over sooner.

    The batches hold a hundred thousand records and rows at a time, made of containers the cyclic
    collector walks again at each full collection though refcounts free them all (nothing of them
    forms a cycle): a third of the import process's CPU. Both are restored at the end."""
    enabled, interval = gc.isenabled(), sys.getswitchinterval()
    gc.disable()
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if enabled:
            gc.enable()


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk


def _open_text(path: Path, fmt: str) -> IO[str]:
    # csv reads its own line endings (a quoted field may hold a newline); JSON lines need them made one.
    return path.open(encoding="utf-8-sig", newline="" if fmt == "csv" else None)


def _survey(path: Path, fmt: str) -> tuple[bytes, int, frozenset[int]]:
    """The file's content hash, its lines and the national IDs it holds more than once."""
    sha256, lines = fingerprint(_file_chunks(path))
    with _open_text(path, fmt) as text:
        return sha256, lines, repeated_ids(person_ids(text, fmt))


def account_hash(key: bytes, account: str) -> bytes:
    """A keyed hash of a bank account: a changed account is told without decrypting the new one."""
    return lookup_hash(key, _account_text(account))


def _account_text(account: str) -> str:
    return f"{_ACCOUNT_CONTEXT}:{account}"


@dataclass
class _Prepared:
    rows: list[repo.StagedRow]  # merged with their batch
    held_back: list[repo.StagedRow]  # national IDs the file holds more than once: merged at the end
    with_photos: list[PersonRecord]  # sealed once their photo is stored (I/O, in the event loop)
    errors: list[RowError]
    through: int


class PersonImporter:
    def __init__(
        self, pool: asyncpg.Pool, storage: ObjectStorage, cipher: FieldCipher, lookup_key: bytes, batch: int
    ) -> None:
        self._pool = pool
        self._storage = storage
        self._cipher = cipher
        self._lookup_key = lookup_key
        self._batch = batch  # lines per transaction (IMPORT_BATCH)

    async def import_file(self, path: Path, actor: str, progress: RowProgress | None = None) -> ImportReport:
        """Land every good row of a CSV or JSON-lines file; `actor` is who the audit log names. The same
        file (by content) run again while an earlier run of it is unfinished resumes that run."""
        fmt = detect_format(path.name)
        sha256, lines, repeated = await asyncio.to_thread(_survey, path, fmt)
        run, fresh = await repo.start_import(self._pool, sha256, path.name, lines, actor)

        def show(through: int) -> None:
            if progress:
                progress(through, lines)

        with _bulk_work():
            through = await self._batches(path, fmt, run, repeated, actor, show)
        async with unit_of_work(self._pool) as uow:
            # The held-back rows: the last good one of each repeated national ID.
            await repo.open_batch(uow, run.id, through)
            await repo.take_held_back(uow, run.id)
            await self._merge(uow, run.id, path.name, actor, {"lines": _HELD_BACK}, [], through)
            done = await repo.complete(uow, run.id)
            await audit.record(uow, actor, "person.import_completed", f"person_import:{run.id}", done)
        show(lines)
        totals = await repo.totals(self._pool, run.id)
        return ImportReport(
            totals.created,
            totals.updated,
            totals.unchanged,
            [RowError(*e) for e in totals.errors],
            run.id,
            not fresh and run.through > 0,
        )

    async def _batches(
        self,
        path: Path,
        fmt: str,
        run: repo.ImportRun,
        repeated: frozenset[int],
        actor: str,
        show: Callable[[int], None],
    ) -> int:
        """Check and merge every line after the last committed batch; the last line merged."""
        through = run.through
        with await asyncio.to_thread(_open_text, path, fmt) as text:
            pending = batches(person_rows(text, fmt, after=through), self._batch)

            def prepare() -> _Prepared | None:
                batch = next(pending, None)
                return None if batch is None else self._prepare(run.id, batch, repeated)

            # The next batch is read, checked and encrypted in a thread while PostgreSQL merges this one.
            # The thread starts once this batch is copied in: the copy is Python work on this thread,
            # and the two would take turns at the GIL.
            ahead = asyncio.ensure_future(asyncio.to_thread(prepare))
            try:
                while (ready := await ahead) is not None:
                    errors = list(ready.errors)
                    stored: list[tuple[PersonRecord, str | None]] = []
                    for record in ready.with_photos:
                        try:
                            stored.append((record, await self._store_photo(record, path.parent)))
                        except ValueError as exc:
                            errors.append(RowError(record.line, "reference_photo", str(exc)))
                    self._sort(ready, stored, run.id, repeated)
                    async with unit_of_work(self._pool) as uow:
                        await repo.open_batch(uow, run.id, through)
                        await repo.stage(uow, ready.held_back, held_back=True)
                        await repo.stage(uow, ready.rows)
                        ahead = asyncio.ensure_future(asyncio.to_thread(prepare))
                        lines = {"lines": [through + 1, ready.through]}
                        await self._merge(uow, run.id, path.name, actor, lines, errors, ready.through)
                    through = ready.through
                    show(through)
            finally:
                # Never leave the reader thread on a closed file, nor its exception unretrieved.
                await asyncio.gather(ahead, return_exceptions=True)
        return through

    def _prepare(self, import_id: uuid.UUID, batch: Batch, repeated: frozenset[int]) -> _Prepared:
        ready = _Prepared([], [], [], batch.errors, batch.through)
        plain: list[tuple[PersonRecord, str | None]] = []
        for record in batch.records:
            if record.reference_photo is None:
                plain.append((record, None))
            else:
                ready.with_photos.append(record)
        self._sort(ready, plain, import_id, repeated)
        return ready

    def _sort(
        self,
        ready: _Prepared,
        records: list[tuple[PersonRecord, str | None]],
        import_id: uuid.UUID,
        repeated: frozenset[int],
    ) -> None:
        """Seal the records (each with its stored photo's key) into the batch's rows or those held back."""
        for (record, _), row in zip(records, self._seal(import_id, records), strict=True):
            (ready.held_back if hash(record.national_id) in repeated else ready.rows).append(row)

    def _seal(self, import_id: uuid.UUID, records: list[tuple[PersonRecord, str | None]]) -> list[repo.StagedRow]:
        """The staged rows: national IDs and accounts encrypted and hashed, never in clear (each kind
        at once: a batch's crypto is most of its Python work)."""
        national_ids = [record.national_id for record, _ in records]
        accounts = [record.pension.bank_account for record, _ in records if record.pension is not None]
        id_hashes = lookup_hashes(self._lookup_key, national_ids)
        id_blobs = self._cipher.encrypt_texts(national_ids, "persons.national_id")
        account_blobs = iter(self._cipher.encrypt_texts(accounts, _ACCOUNT_CONTEXT))
        account_hashes = iter(lookup_hashes(self._lookup_key, map(_account_text, accounts)))
        new_ids = uuid7_texts(len(records))
        rows: list[repo.StagedRow] = []
        for (record, photo_key), id_hash, id_blob, new_id in zip(records, id_hashes, id_blobs, new_ids, strict=True):
            person = (
                import_id,
                record.line,
                id_hash,
                id_blob,
                mask_national_id(record.national_id),
                record.name,
                record.birth_date,
                record.phone,
                record.region,
                record.locale,
                photo_key,
            )
            pension = record.pension
            if pension is None:
                rows.append((*person, None, None, None, None, None, new_id))
                continue
            rows.append(
                (
                    *person,
                    pension.monthly_amount_fen,
                    next(account_blobs),
                    mask_account(pension.bank_account),
                    next(account_hashes),
                    pension.start_month,
                    new_id,
                )
            )
        return rows

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
    async def _merge(
        self,
        uow: UnitOfWork,
        import_id: uuid.UUID,
        file_name: str,
        actor: str,
        lines: Mapping[str, object],
        errors: list[RowError],
        through: int,
    ) -> None:
        """Merge person_batch (`lines` says which), report the batch's errors, move the import on."""
        stored = await repo.classify(uow)
        await repo.move_accounts(
            uow,
            [
                r["line"]
                for r in stored
                if account_hash(self._lookup_key, self._cipher.decrypt_text(r["stored_account"], _ACCOUNT_CONTEXT))
                != r["bank_account_hash"]
            ],
        )
        counts = await repo.merge_counts(uow)
        numbers = await repo.card_sequence_numbers(uow, counts.cards) if counts.cards else []
        await repo.write_merge(uow, card_numbers(numbers), uuid7_texts(len(numbers)))
        await self._audit_batch(uow, import_id, file_name, actor, lines, counts)
        await repo.close_batch(uow, import_id, through, numbered_errors(errors), counts)

    async def _audit_batch(
        self,
        uow: UnitOfWork,
        import_id: uuid.UUID,
        file_name: str,
        actor: str,
        lines: Mapping[str, object],
        counts: repo.MergeCounts,
    ) -> None:
        """One entry for the batch (its lines and counts: the persons it created are named by it), one
        per person it changed (the fields, as a change to a bank account must be traceable to who made
        it), and the face worker told of each new reference photo."""
        if lines.get("lines") == _HELD_BACK and not counts.created + counts.updated + counts.unchanged:
            return  # no national ID repeated: the batches' entries say it all
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
            {"file": file_name, **lines, **counts._asdict()},
        )
        for c in changes:
            if "reference_photo" in c["changed"]:
                # The face worker enrols the new reference now, not during the pensioner's first check.
                person_id, key = c["person_id"], c["reference_photo_key"]
                await jobs.enqueue(uow, ENROLL_JOB, f"{person_id} {key}".encode(), f"enroll:{person_id}:{key}")


def numbered_errors(errors: list[RowError]) -> list[tuple[int, int, str, str]]:
    """(line, n, field, reason): n keeps a line's errors in the order they were found."""
    out: list[tuple[int, int, str, str]] = []
    for e in sorted(errors, key=lambda e: e.line):  # stable: a line's errors keep their order
        n = out[-1][1] + 1 if out and out[-1][0] == e.line else 0
        out.append((e.line, n, e.field, e.reason))
    return out


def _read_photo(path: Path) -> bytes | None:
    """The file's bytes, or None when there is no such file (`base / absolute` is the absolute path)."""
    return path.read_bytes() if path.is_file() else None
