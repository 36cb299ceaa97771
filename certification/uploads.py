"""Checks on an uploaded selfie before anything is stored: pure functions over the parts' bytes.

Decoding is the worker's job; here only the container is recognised from its first bytes (the
file name and the declared content type are the client's word, not evidence).
"""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import BadRequest, Unprocessable, UnsupportedMedia

UPLOAD_MAX_BYTES = 20 * 1024 * 1024
MIN_FRAMES, MAX_FRAMES = 5, 30


def video_type(data: bytes) -> str | None:
    """The container's media type (MP4, QuickTime, or WebM/Matroska, which some Android phones and
    browsers record whatever the file is named), else None."""
    if len(data) < 12:
        return None
    if data[:4] == b"\x1a\x45\xdf\xa3":  # the EBML header of WebM and Matroska
        return "video/webm"
    box = data[4:8]
    if box == b"ftyp":
        return "video/quicktime" if data[8:12] == b"qt  " else "video/mp4"
    # Old QuickTime files may open with another top-level atom instead of ftyp.
    return "video/quicktime" if box in (b"moov", b"wide", b"mdat", b"free") else None


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def check_video(data: bytes) -> str:
    if not data:
        raise BadRequest("upload_empty")
    if len(data) > UPLOAD_MAX_BYTES:
        raise Unprocessable("upload_too_large", max_mb=UPLOAD_MAX_BYTES // (1024 * 1024))
    content_type = video_type(data)
    if content_type is None:
        raise UnsupportedMedia("not_a_video")
    return content_type


def check_frames(frames: Sequence[bytes]) -> None:
    if not MIN_FRAMES <= len(frames) <= MAX_FRAMES:
        raise Unprocessable("frames_count", low=MIN_FRAMES, high=MAX_FRAMES)
    if any(not frame for frame in frames):
        raise BadRequest("upload_empty")
    if not all(is_jpeg(frame) for frame in frames):
        raise UnsupportedMedia("not_jpeg")
    if sum(len(frame) for frame in frames) > UPLOAD_MAX_BYTES:
        raise Unprocessable("upload_too_large", max_mb=UPLOAD_MAX_BYTES // (1024 * 1024))
