"""Object storage through boto3 (any S3 API: the embedded SeaweedFS, AWS, MinIO...).

boto3 is blocking; async callers go through ``asyncio.to_thread``. Objects are private.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from infra.config import Settings

if TYPE_CHECKING:
    from types_boto3_s3.type_defs import ObjectIdentifierTypeDef


@dataclass(frozen=True)
class StoredObject:
    key: str
    last_modified: datetime  # when the object was last written, by the object store's clock


class StorageError(Exception):
    """The object store refused part of a request."""


class ObjectStorage:
    def __init__(self, settings: Settings, bucket: str | None = None) -> None:
        self.bucket = bucket or settings.s3_bucket
        self._sse = settings.s3_sse_kms_key_id
        self._client = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                # A frozen or unreachable S3 fails a call in about 2 x S3_TIMEOUT_S, not minutes.
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=min(2, settings.s3_timeout_s),
                read_timeout=settings.s3_timeout_s,
            ),
        )

    def _encryption(self) -> dict[str, Any]:
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self._sse} if self._sse else {}

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type, **self._encryption())

    def get_bytes(self, key: str) -> bytes:
        body: bytes = self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no such object."""
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def keys(self, prefix: str, limit: int | None = None) -> list[str]:
        """The keys under `prefix` in S3's ascending order, the first `limit` of them (None: all)."""
        found: list[str] = []
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        while limit is None or len(found) < limit:
            if limit is not None:
                params["MaxKeys"] = min(1000, limit - len(found))
            page = self._client.list_objects_v2(**params)
            found += [item["Key"] for item in page.get("Contents", []) if "Key" in item]
            if not page.get("IsTruncated"):
                break
            params["ContinuationToken"] = page["NextContinuationToken"]
        return found

    def delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # the S3 limit per DeleteObjects call
            batch: list[ObjectIdentifierTypeDef] = [{"Key": key} for key in keys[start : start + 1000]]
            # Quiet: the answer lists only failures, and any failure must stop the caller marking the
            # objects gone.
            answer = self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if errors := answer.get("Errors"):
                raise StorageError(
                    f"{len(errors)} objects not deleted, e.g. {errors[0].get('Key')}: {errors[0].get('Code')}"
                )

    def listed(self, prefix: str, start_after: str | None = None, limit: int = 1000) -> tuple[list[StoredObject], bool]:
        """Up to `limit` (at most 1,000) objects under `prefix` in key order, after the key
        `start_after`, with when each was last written; and whether more follow. Objects deleted
        between two calls never disturb the next page, which starts after a key, not a token."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": limit}
        if start_after is not None:
            params["StartAfter"] = start_after
        page = self._client.list_objects_v2(**params)
        found = [
            StoredObject(item["Key"], item["LastModified"])
            for item in page.get("Contents", [])
            if "Key" in item and "LastModified" in item
        ]
        return found, bool(page.get("IsTruncated")) and bool(found)

    def presigned_get(self, key: str, expires_s: int) -> str:
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_s
        )
        return url

    def presigned_post(
        self, key_prefix: str, *, max_bytes: int, content_type_prefix: str, expires_s: int
    ) -> dict[str, Any]:
        """A browser-style upload form: the server enforces the key prefix, size and content type."""
        conditions: list[Any] = [
            ["starts-with", "$key", key_prefix],
            ["content-length-range", 1, max_bytes],
            ["starts-with", "$Content-Type", content_type_prefix],
        ]
        fields: dict[str, str] = {}
        if self._sse:
            fields = {
                "x-amz-server-side-encryption": "aws:kms",
                "x-amz-server-side-encryption-aws-kms-key-id": self._sse,
            }
            conditions += [{name: value} for name, value in fields.items()]
        post: dict[str, Any] = self._client.generate_presigned_post(
            self.bucket, key_prefix + "${filename}", Fields=fields, Conditions=conditions, ExpiresIn=expires_s
        )
        return post

    def ensure_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._client.create_bucket(Bucket=self.bucket)

    async def ready(self) -> bool:
        try:
            await asyncio.to_thread(self._client.head_bucket, Bucket=self.bucket)
        except (BotoCoreError, ClientError):
            return False
        return True
