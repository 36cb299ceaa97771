"""The embedded S3 server (issue 16, item 10): of everything `weed mini` listens on, only the S3 API, with
its credentials, lists or gives out a stored object (a selfie)."""

from __future__ import annotations

import secrets
import stat
import struct
from pathlib import Path

import grpc
import httpx
import psutil

from infra.config import Settings
from infra.storage import ObjectStorage
from tests.conftest import Embedded


def _file_ids(data_dir: Path, bucket: str) -> list[str]:
    """The volume file ids of the bucket's objects (what a caller who learned one would ask the volume server
    for), read from the volume files. An index entry is the needle id (8 bytes), its offset in 8-byte units
    (5 bytes: this build of weed is the large-disk one) and its size (4 bytes); a needle starts with its
    random cookie."""
    found = []
    for index in data_dir.glob(f"{bucket}_*.idx"):
        volume = index.stem.rpartition("_")[2]
        entries, data = index.read_bytes(), index.with_suffix(".dat").read_bytes()
        for at in range(0, len(entries), 17):
            needle, low, high, size = struct.unpack(">QIBI", entries[at : at + 17])
            start = ((high << 32) | low) * 8
            if size and start:
                (cookie,) = struct.unpack(">I", data[start : start + 4])
                found.append(f"{volume},{needle:x}{cookie:08x}")
    return found


def _list_entries(directory: str) -> bytes:
    """filer_pb.ListEntriesRequest{directory, limit: 100}, encoded by hand (weed's protos are not installed)."""
    name = directory.encode()
    return bytes([0x0A, len(name)]) + name + bytes([0x28, 100])


def test_only_the_s3_api_with_its_credentials_lists_or_reads_an_object(embedded: Embedded, settings: Settings) -> None:
    bucket, folder = settings.s3_bucket, secrets.token_hex(8)
    key = f"uploads/{folder}/selfie.mp4"
    body = secrets.token_bytes(8192)  # random, so stored as sent (weed gzips what compresses)
    storage = ObjectStorage(settings)
    storage.put_bytes(key, body, "video/mp4")
    assert storage.get_bytes(key) == body

    weed = psutil.Process(embedded.s3.process.pid)
    tcp = {c.laddr for c in weed.net_connections("inet") if c.status == psutil.CONN_LISTEN}
    assert {address.ip for address in tcp} == {"127.0.0.1"}
    unix = sorted({c.laddr for c in weed.net_connections("unix") if c.laddr})
    data_dir = embedded.s3.log_path.parent
    file_ids = _file_ids(data_dir, bucket)
    assert file_ids, "the object's volume file ids were not found"
    paths = [  # the S3 API's, the filer's, the master's and the volume server's ways to a listing or the bytes
        "/",
        f"/{bucket}?list-type=2&prefix=uploads/",
        f"/{bucket}/{key}",
        f"/buckets/{bucket}/uploads/",
        f"/buckets/{bucket}/uploads/?pretty=y",
        f"/buckets/{bucket}/{key}",
        "/dir/status",
        "/vol/status",
        *(f"/{file_id}" for file_id in file_ids),
    ]

    def leaked(asked: str, answer: bytes) -> bool:
        """The object's bytes, or its folder's name where the question did not name it (a listing)."""
        return body[:64] in answer or (folder not in asked and folder.encode() in answer)

    leaks: list[str] = []
    places = [(f"http://127.0.0.1:{a.port}", httpx.HTTPTransport(), f"127.0.0.1:{a.port}") for a in sorted(tcp)]
    places += [("http://weed", httpx.HTTPTransport(uds=path), f"unix:{path}") for path in unix]
    for base, transport, grpc_target in places:
        with httpx.Client(base_url=base, transport=transport, timeout=5) as client:
            for path in paths:
                try:
                    answer = client.get(path)
                except httpx.HTTPError:
                    continue  # not HTTP/1.1 there (gRPC)
                if leaked(path, answer.content):
                    leaks.append(f"HTTP {grpc_target}{path}: {answer.status_code}")
        directory = f"/buckets/{bucket}/uploads"
        with grpc.insecure_channel(grpc_target) as channel:
            list_entries = channel.unary_stream("/filer_pb.SeaweedFiler/ListEntries")
            try:
                entries = b"".join(list_entries(_list_entries(directory), timeout=5))
            except grpc.RpcError:
                continue  # no such service there, or a client certificate required (mTLS)
            if leaked(directory, entries):
                leaks.append(f"gRPC ListEntries {grpc_target}")
    assert leaks == [], leaks

    # The S3 API itself refuses a caller without credentials, and nobody else reads the files.
    endpoint = embedded.s3.endpoint_url
    assert httpx.get(f"{endpoint}/{bucket}/{key}").status_code == 403
    assert httpx.get(f"{endpoint}/{bucket}?list-type=2").status_code == 403
    assert stat.S_IMODE(data_dir.stat().st_mode) & 0o077 == 0, oct(data_dir.stat().st_mode)
