"""Decode an upload into sampled RGB frames: the only module that parses untrusted media bytes.

Every way the bytes can be wrong (empty, not a video, truncated, a decompression bomb, an absurd
resolution, no frames) ends as one `MediaError` carrying the `Reason` the person is told.
Frames are downscaled as they are decoded and yielded one by one, so memory stays bounded by one
decoded frame whatever the clip's length or resolution.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import av
import av.container
import numpy as np
import numpy.typing as npt
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageOps

from liveness.model import Media, Reason

Image_ = npt.NDArray[np.uint8]  # H x W x 3, RGB

# A phone uploads a few MB; 64 MB bounds what one job may pull into memory.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
# Larger sources are refused before decoding anything: one 8K frame alone costs ~100 MB as RGB.
MAX_SOURCE_SIDE = 4096
# Phone stills reach ~50 MP; above that a still is a bomb, not a photo (PIL's own limit is ~179 MP).
MAX_STILL_PIXELS = 50_000_000
# Analysis size: a selfie face spans 40-60% of the frame height, 280+ px at 720p, more than the
# landmark predictor and the encoder's 150 px chip use. Larger sources (1080p, 4K) are scaled down
# while decoding; smaller ones are left alone: scaling costs more than every later step saves.
MAX_LONG_SIDE = 1280
MAX_SHORT_SIDE = 720
# A blink lasts 100-400 ms: 15 fps keeps at least one sample inside it and halves 30 fps work.
MAX_FPS = 15.0
# A 1-3 action challenge takes 3-10 s; the app stops recording at 15 s.
MAX_ANALYSED_S = 15.0
# Beyond this the clip is not the app's recording; decoding stops there to bound CPU.
MAX_CLIP_S = 20.0
MAX_STILLS = 30
# A burst carries no timestamps. The API takes 5-30 stills for one challenge; taken 4 a second
# they span the 1-7 s a challenge takes.
BURST_INTERVAL_S = 0.25
# Guards against a stream of tiny frames at an absurd frame rate (a cheap way to burn CPU).
MAX_DECODED_FRAMES = 2000
VIDEO_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
STILL_FORMATS = ("JPEG", "PNG", "WEBP")
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


class MediaError(Exception):
    """The upload cannot be analysed; `reason` says why in terms the person can act on (`detail`
    goes into the message only, for logs and tracebacks)."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason


@dataclass(frozen=True)
class Frame:
    t: float  # seconds since the clip's first frame
    image: Image_


def luma(image: Image_) -> npt.NDArray[np.float64]:
    """Grey levels (0-255) of RGB pixels, by the ITU-R BT.601 weights JPEG uses."""
    result: npt.NDArray[np.float64] = image.astype(np.float64) @ _LUMA_WEIGHTS
    return result


def frame_brightness(image: Image_) -> float:
    """Mean luma of a whole picture, on every 4th pixel each way: whether it is dark where no face shows."""
    return float(luma(image[::4, ::4]).mean())


def frames(media: Media) -> Iterator[Frame]:
    """The upload's sampled frames, in order; raises MediaError (possibly mid-iteration)."""
    if media.video is not None:
        return decode_video(media.video)
    if media.frames:
        return decode_burst(media.frames)
    raise MediaError(Reason.UNREADABLE_MEDIA, "no video and no frames")


def analysis_size(width: int, height: int) -> tuple[int, int]:
    """The size a frame is analysed at: within MAX_LONG_SIDE x MAX_SHORT_SIDE, aspect kept, even."""
    scale = min(MAX_LONG_SIDE / max(width, height), MAX_SHORT_SIDE / min(width, height))
    if scale >= 1:
        return width, height
    # Even sides keep swscale's chroma handling exact for yuv420 sources.
    return max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2))


def decode_video(data: bytes) -> Iterator[Frame]:
    if not data:
        raise MediaError(Reason.UNREADABLE_MEDIA, "empty upload")
    if len(data) > MAX_UPLOAD_BYTES:
        raise MediaError(Reason.UNREADABLE_MEDIA, f"{len(data)} bytes")
    container = _open_video(data)
    return _video_frames(container)


def _open_video(data: bytes) -> av.container.InputContainer:
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, OSError, ValueError) as error:
        raise MediaError(Reason.UNREADABLE_MEDIA, f"not a video: {error}") from error
    if container.format.name not in VIDEO_FORMATS or not container.streams.video:
        name = container.format.name
        container.close()
        raise MediaError(Reason.UNREADABLE_MEDIA, f"container {name!r} without a supported video stream")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if max(width, height) > MAX_SOURCE_SIDE:
        container.close()
        raise MediaError(Reason.UNREADABLE_MEDIA, f"{width}x{height} video")
    return container


def _video_frames(container: av.container.InputContainer) -> Iterator[Frame]:
    with container:
        stream = container.streams.video[0]
        # One scaler for the whole clip: building swscale's context per frame doubles the cost.
        scaler = VideoReformatter()
        rate = float(stream.average_rate or 30)
        decoded = 0
        first: float | None = None
        last_kept = -math.inf
        try:
            for frame in container.decode(stream):
                decoded += 1
                if decoded > MAX_DECODED_FRAMES:
                    raise MediaError(Reason.TOO_LONG, f"more than {MAX_DECODED_FRAMES} frames")
                pts_time = frame.time if frame.time is not None else decoded / rate
                first = pts_time if first is None else first
                t = pts_time - first
                if t > MAX_CLIP_S:
                    raise MediaError(Reason.TOO_LONG, f"longer than {MAX_CLIP_S:.0f} s")
                # The tolerance keeps every other frame of a 29.97 fps clip rather than every third.
                if t > MAX_ANALYSED_S or t - last_kept < 0.8 / MAX_FPS:
                    continue
                last_kept = t
                yield Frame(t=t, image=_video_image(frame, scaler))
        # A crafted stream can make the decoder ask for absurd buffers: that is bad media too.
        except (av.FFmpegError, OSError, ValueError, MemoryError) as error:
            raise MediaError(Reason.UNREADABLE_MEDIA, f"decoding failed: {error}") from error
        if first is None:
            raise MediaError(Reason.UNREADABLE_MEDIA, "no video frames")


def _video_image(frame: av.VideoFrame, scaler: VideoReformatter) -> Image_:
    if max(frame.width, frame.height) > MAX_SOURCE_SIDE:
        # The stream header can understate the size; a frame can still change it mid-stream.
        raise MediaError(Reason.UNREADABLE_MEDIA, f"{frame.width}x{frame.height} frame")
    width, height = analysis_size(frame.width, frame.height)
    rgb = scaler.reformat(frame, width=width, height=height, format="rgb24", interpolation="BILINEAR")
    # Phones record sideways and store the upright orientation as a display matrix.
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    # dlib takes only C-contiguous arrays; PyAV pads rows of odd widths.
    image: Image_ = np.ascontiguousarray(np.rot90(rgb.to_ndarray(), k=quarter_turns))
    return image


def decode_burst(stills: Sequence[bytes]) -> Iterator[Frame]:
    if len(stills) > MAX_STILLS:
        raise MediaError(Reason.TOO_LONG, f"{len(stills)} stills")
    if sum(len(still) for still in stills) > MAX_UPLOAD_BYTES:
        raise MediaError(Reason.UNREADABLE_MEDIA, "burst too large")
    return (Frame(t=index * BURST_INTERVAL_S, image=decode_still(still)) for index, still in enumerate(stills))


def decode_still(data: bytes) -> Image_:
    """One JPEG/PNG/WebP still, EXIF-transposed (phones store portraits sideways), as analysis-size RGB."""
    if not data:
        raise MediaError(Reason.UNREADABLE_MEDIA, "empty image")
    if len(data) > MAX_UPLOAD_BYTES:
        raise MediaError(Reason.UNREADABLE_MEDIA, f"{len(data)} bytes")
    try:
        with Image.open(io.BytesIO(data), formats=STILL_FORMATS) as image:
            width, height = image.size
            # Checked on the header alone, before a single pixel is decompressed. The side limit
            # stops a 1-pixel-high strip that passes the pixel count.
            if width * height > MAX_STILL_PIXELS or max(width, height) > 4 * MAX_SOURCE_SIDE:
                raise MediaError(Reason.UNREADABLE_MEDIA, f"{width}x{height} image")
            target = analysis_size(width, height)
            # JPEG can decode at 1/2..1/8 scale directly: a 12 MP photo costs a quarter of the work.
            image.draft("RGB", target)
            upright = ImageOps.exif_transpose(image).convert("RGB")
            size = analysis_size(*upright.size)
            if size != upright.size:
                upright = upright.resize(size, Image.Resampling.BILINEAR)
            return np.asarray(upright, dtype=np.uint8)
    except MediaError:
        raise
    # PIL raises a zoo of types on malformed input (SyntaxError, struct.error, IndexError,
    # DecompressionBombError, ...); every one of them means the same thing here.
    except Exception as error:
        raise MediaError(Reason.UNREADABLE_MEDIA, f"not an image: {error}") from error
