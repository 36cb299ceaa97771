"""Decoding uploads: sampling, orientation, downscaling, and every kind of bad bytes as one MediaError."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from liveness import media
from liveness.media import MediaError, decode_burst, decode_still, decode_video, frames
from liveness.model import Media, Reason

FACES = Path(__file__).resolve().parents[3].parent / "shared" / "faces"


def clip(width: int, height: int, count: int, fps: int = 15) -> bytes:
    """An mp4 whose frames are black with a white band along the top edge."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        picture = np.zeros((height, width, 3), np.uint8)
        picture[: height // 4] = 255
        for _ in range(count):
            output.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        output.mux(stream.encode())
    return buffer.getvalue()


def rotated(data: bytes) -> bytes:
    """The clip with the display matrix a phone writes for a portrait recording (turn 90 degrees clockwise)."""
    patched = bytearray(data)
    tkhd = patched.find(b"tkhd")
    assert patched[tkhd + 4] == 0, "version 0 track header"
    # version/flags, 2 times, track id, reserved, duration, 8 reserved, layer, group, volume, reserved
    matrix = tkhd + 4 + 4 + 4 * 5 + 8 + 2 * 4
    struct.pack_into(">9i", patched, matrix, 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    return bytes(patched)


def png_bomb(side: int = 20_000) -> bytes:
    """A 1-bit PNG of side x side pixels (400 MP, ~1.2 GB as RGB) in ~50 KB."""
    rows = zlib.compress(b"".join(b"\x00" + bytes(side // 8) for _ in range(side)), 9)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def reason_of(upload: Media) -> Reason:
    with pytest.raises(MediaError) as error:
        list(frames(upload))
    return error.value.reason


def test_a_30_fps_clip_is_sampled_at_15_fps_from_time_zero() -> None:
    decoded = list(decode_video(clip(64, 48, 30, fps=30)))
    assert len(decoded) == 15
    assert decoded[0].t == 0
    assert np.diff([f.t for f in decoded]) == pytest.approx(2 / 30)
    assert decoded[0].image.shape == (48, 64, 3)
    assert decoded[0].image.flags["C_CONTIGUOUS"]


def test_large_frames_are_scaled_down_to_the_analysis_size() -> None:
    (first, *_) = decode_video(clip(1920, 1080, 2))
    assert first.image.shape == (720, 1280, 3)
    assert media.analysis_size(1080, 1920) == (720, 1280)
    assert media.analysis_size(450, 270) == (450, 270)


def test_the_display_matrix_turns_the_frames_upright() -> None:
    (first, *_) = decode_video(rotated(clip(64, 32, 3)))
    assert first.image.shape == (64, 32, 3)
    # The band along the recorded top edge ends up along the right edge, as a player shows it.
    assert first.image[:, -4:].mean() > 200
    assert first.image[:, :4].mean() < 30


def test_clips_longer_than_the_limit_are_refused() -> None:
    with pytest.raises(MediaError) as error:
        list(decode_video(clip(32, 32, int(media.MAX_CLIP_S * 2) + 4, fps=2)))
    assert error.value.reason is Reason.TOO_LONG


@pytest.mark.parametrize(
    ("upload", "why"),
    [
        (Media(video=b""), "empty"),
        (Media(), "nothing at all"),
        (Media(video=b"this is a text file, renamed .mp4\n" * 50), "text"),
        (Media(video=os.urandom(25 * 1024 * 1024)), "25 MB of random bytes"),
        (Media(video=clip(64, 48, 20)[:-400]), "truncated (the index at the end is cut off)"),
        (Media(video=png_bomb()), "a decompression bomb sent as the video"),
        (Media(video=clip(4100, 16, 2)), "wider than 4096 px"),
        (Media(video=clip(64, 48, 0)), "a video stream without frames"),
        (Media(frames=(png_bomb(),)), "a decompression bomb in a burst"),
        (Media(frames=(b"\xff\xd8\xff\xe0 not really a jpeg",)), "a broken still"),
    ],
)
def test_bad_uploads_raise_one_media_error(upload: Media, why: str) -> None:
    assert reason_of(upload) is Reason.UNREADABLE_MEDIA, why


def test_a_burst_of_too_many_stills_is_too_long() -> None:
    still = jpeg(Image.new("RGB", (32, 32)))
    assert reason_of(Media(frames=(still,) * (media.MAX_STILLS + 1))) is Reason.TOO_LONG


def test_a_burst_is_timed_at_the_capture_interval_and_scaled_down() -> None:
    decoded = list(decode_burst([jpeg(Image.new("RGB", (2000, 1500), (90, 90, 90)))] * 3))
    assert [f.t for f in decoded] == pytest.approx([0, media.BURST_INTERVAL_S, 2 * media.BURST_INTERVAL_S])
    assert decoded[0].image.shape == (720, 960, 3)


@pytest.mark.skipif(not FACES.is_dir(), reason=f"face test data not found at {FACES}")
def test_stills_are_turned_upright_by_their_exif_orientation() -> None:
    path = FACES / "stills" / "sfas__image_T1.jpg"
    with Image.open(path) as raw:
        assert raw.getexif().get(0x0112) == 6, "stored sideways"
        width, height = raw.size
    image = decode_still(path.read_bytes())
    assert (image.shape[1] > image.shape[0]) == (height > width)
