"""A kit of presentation attacks on the certification check, for the tests and `tools.liveness.evaluate`.

Each attack class is generated from any still or clip: a photo animated by a script to perform
the challenge (zoom, drift, a shear or perspective warp for turns, eyes and mouth painted closed
or open), the same from the exact enrolled reference photo, one fixed clip performing every
action twice, a live clip mirrored or cut to an excerpt, a live clip with another person's head
turn spliced in, and a photo shown on a screen or a print. Generation is seeded: a variant is
reproducible from its seed. Not part of the face worker: nothing in the pipeline imports it.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt

from liveness.model import Action

Image_ = npt.NDArray[np.uint8]
Points = npt.NDArray[np.float64]

FPS = 30
CANVAS = (540, 720)  # width, height: a phone's portrait selfie, scaled down


@dataclass(frozen=True)
class Clip:
    frames: tuple[Image_, ...]
    fps: float = FPS

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps


def encode(clip: Clip, crf: int = 23) -> bytes:
    """An H.264 MP4 as a phone would upload it."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(round(clip.fps * 1000), 1000))
        height, width = clip.frames[0].shape[:2]
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for image in clip.frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[: stream.height, : stream.width]), "rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def decode(data: bytes) -> Clip:
    """Every frame of a clip, upright, at its own rate."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or FPS)
        frames: list[Image_] = []
        for frame in container.decode(stream):
            image = frame.to_ndarray(format="rgb24")
            frames.append(_pixels(np.ascontiguousarray(np.rot90(image, k=round((frame.rotation or 0) / 90) % 4))))
    return Clip(tuple(frames), fps)


def _pixels(image: npt.NDArray[Any]) -> Image_:
    """OpenCV's answer typed as the 8-bit RGB picture it is."""
    return np.asarray(image, dtype=np.uint8)


def face_points(image: Image_) -> Points:
    """The 68 landmarks of the largest face in a photo (iBUG order)."""
    import face_recognition  # here: the statistics of tools.liveness.evaluate import without dlib

    boxes = face_recognition.face_locations(image, 1, "hog")
    if not boxes:
        raise ValueError("no face in the photo")
    box = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
    parts = face_recognition.face_landmarks(image, [box], "large")[0]
    names = ("chin", "left_eyebrow", "right_eyebrow", "nose_bridge", "nose_tip", "left_eye", "right_eye")
    points = [p for name in names for p in parts[name]]
    top, bottom = parts["top_lip"], parts["bottom_lip"]
    points += top[0:7] + bottom[1:6]
    points += [top[i] for i in (11, 10, 9, 8, 7)] + [bottom[i] for i in (10, 9, 8)]
    return np.asarray(points, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# A still photo animated by a script
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Animation:
    """How a script animates one photo; `vary` draws one at random."""

    face_share: float = 0.42  # face height (brows to chin) per canvas height
    zoom: float = 0.08  # relative growth over the clip
    drift_px: float = 12.0  # slow sway of the whole picture
    roll_deg: float = 2.0
    turn_style: str = "mesh"  # "shear" | "perspective" | "cylinder" | "mesh" (see _turn_warp, _cylinder, _mesh)
    turn_strength: float = 0.35  # nose travel per eye distance at the held turn
    turn_hold_s: float = 0.9
    blink_frames: int = 3
    eye_paint: str = "skin"  # "skin" | "lashes"
    mouth_hold_s: float = 0.9
    mouth_open: float = 0.45  # painted gap per mouth width
    lead_s: float = 1.0
    gap_s: float = 0.8
    noise: float = 0.0  # per-frame Gaussian noise (grey levels), as a camera would add
    crf: int = 23

    def stronger(self) -> Animation:
        """The next try of an attacker whose fake was not read as performing every action."""
        return replace(
            self,
            turn_strength=min(0.5, self.turn_strength + 0.05),
            turn_hold_s=self.turn_hold_s + 0.3,
            blink_frames=min(6, self.blink_frames + 1),
            eye_paint="lashes",
            mouth_open=min(0.9, self.mouth_open + 0.2),
            mouth_hold_s=self.mouth_hold_s + 0.3,
        )

    @classmethod
    def vary(cls, rng: random.Random) -> Animation:
        return cls(
            face_share=rng.uniform(0.34, 0.5),
            zoom=rng.uniform(-0.08, 0.15),
            drift_px=rng.uniform(0, 25),
            roll_deg=rng.uniform(0, 4),
            turn_style=rng.choice(("shear", "perspective", "cylinder", "mesh", "mesh", "mesh")),
            turn_strength=rng.uniform(0.28, 0.4),
            turn_hold_s=rng.uniform(0.6, 1.4),
            blink_frames=rng.choice((2, 3, 4)),
            eye_paint=rng.choice(("skin", "lashes", "lashes")),
            mouth_hold_s=rng.uniform(0.6, 1.4),
            mouth_open=rng.uniform(0.3, 0.6),
            lead_s=rng.uniform(0.5, 1.5),
            gap_s=rng.uniform(0.5, 1.2),
            noise=rng.choice((0.0, 0.0, 2.0, 4.0)),
            crf=rng.choice((20, 23, 28)),
        )


@dataclass(frozen=True)
class _Pose:
    """One output frame's state: which action shows, and how far (0-1)."""

    turn: float = 0.0  # signed: + the person's own left
    eyes_closed: bool = False
    mouth: float = 0.0


def _timeline(actions: Sequence[Action], a: Animation) -> list[_Pose]:
    poses = [_Pose()] * round(a.lead_s * FPS)
    ramp = round(0.3 * FPS)
    for action in actions:
        if action is Action.BLINK:
            poses += [_Pose(eyes_closed=True)] * a.blink_frames
        elif action in (Action.TURN_LEFT, Action.TURN_RIGHT):
            sign = 1.0 if action is Action.TURN_LEFT else -1.0
            up = [_Pose(turn=sign * (i + 1) / ramp) for i in range(ramp)]
            poses += up + [_Pose(turn=sign)] * round(a.turn_hold_s * FPS) + up[::-1]
        else:
            opening = [_Pose(mouth=(i + 1) / 4) for i in range(4)]
            poses += opening + [_Pose(mouth=1.0)] * round(a.mouth_hold_s * FPS) + opening[::-1]
        poses += [_Pose()] * round(a.gap_s * FPS)
    return poses


def _skin(image: Image_, points: Points) -> npt.NDArray[np.float64]:
    """The cheeks' colour, sampled below the eyes."""
    eye_distance = float(np.linalg.norm(points[45] - points[36]))
    samples = []
    for corner in (points[41], points[46]):
        x, y = corner + np.array([0.0, 0.35 * eye_distance])
        r = max(2, round(0.08 * eye_distance))
        patch = image[max(0, round(y) - r) : round(y) + r, max(0, round(x) - r) : round(x) + r]
        if patch.size:
            samples.append(patch.reshape(-1, 3).mean(axis=0))
    return np.mean(samples, axis=0) if samples else np.array([180.0, 140.0, 120.0])


def paint_eyes_closed(image: Image_, points: Points, style: str) -> Image_:
    """Eyes covered with the cheeks' colour and a dark lid line drawn from corner to corner (thin
    for "skin", thick for "lashes"): a drawn blink."""
    out = image.copy()
    skin = tuple(float(c) for c in _skin(image, points))
    eye_distance = float(np.linalg.norm(points[45] - points[36]))
    thickness = max(1, round(eye_distance * (0.03 if style == "lashes" else 0.015)))
    mask = np.zeros(image.shape[:2], np.uint8)
    for eye in ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47)):
        outline = points[list(eye)]
        centre = outline.mean(axis=0)
        grown = np.round(centre + (outline - centre) * np.array([1.15, 1.6])).astype(np.int32)
        cv2.fillPoly(out, [grown], skin, lineType=cv2.LINE_AA)
        cv2.fillPoly(mask, [np.round(centre + (outline - centre) * 2.2).astype(np.int32)], 255)
        # The closed lid: a line from corner to corner, sagging to the lower lid.
        inner, outer = outline[0], outline[3]
        sag = (outline[4] + outline[5]) / 2 - (inner + outer) / 2
        lid = np.array([inner + t * (outer - inner) + 4 * t * (1 - t) * sag * 0.8 for t in np.linspace(0, 1, 9)])
        cv2.polylines(out, [np.round(lid).astype(np.int32)], False, (45, 30, 30), thickness, cv2.LINE_AA)
    # Soften the paint's edges as an editing tool would.
    blurred = cv2.GaussianBlur(out, (0, 0), max(0.8, eye_distance * 0.012))
    soft = cv2.GaussianBlur(mask, (0, 0), 2)[..., None] / 255.0
    return (out * (1 - soft) + blurred * soft).astype(np.uint8)


def paint_mouth_open(image: Image_, points: Points, gap: float) -> Image_:
    """A dark opening drawn between the lips, the lower lip pushed down: a drawn open mouth."""
    out = image.copy()
    width = float(np.linalg.norm(points[54] - points[48]))
    centre = points[60:68].mean(axis=0)
    height = gap * width * 0.5
    # Push the lower lip and chin down by the gap: copy the region below the mouth downwards.
    top = round(centre[1])
    shift = max(1, round(height))
    x0, x1 = max(0, round(points[48][0] - 0.2 * width)), min(image.shape[1], round(points[54][0] + 0.2 * width))
    bottom = min(image.shape[0] - shift, round(points[8][1]))
    if bottom > top:
        out[top + shift : bottom + shift, x0:x1] = image[top:bottom, x0:x1]
    axes = (max(1, round(0.36 * width)), max(1, round(height * 0.75)))
    cv2.ellipse(
        out, (round(centre[0]), round(centre[1] + height * 0.5)), axes, 0, 0, 360, (45, 15, 20), -1, cv2.LINE_AA
    )
    return _pixels(cv2.GaussianBlur(out, (0, 0), 0.7))


def _turn_warp(points: Points, turn: float, a: Animation) -> npt.NDArray[np.float64]:
    """A homography standing in for a head turn (in source pixels around the face).

    "shear" slides what lies below the eyes sideways, so the nose leaves the middle of the eyes;
    "perspective" turns the picture's plane about the vertical axis through the nose, as a photo
    turned in the hand; "cylinder" is not a homography: see `_cylinder`. The person's left is the image's right in an
    unmirrored selfie, so a turn to their left moves the nose towards +x.
    """
    eyes_y = float((points[36][1] + points[45][1]) / 2)
    centre_x = float(points[27][0])
    eye_distance = float(np.linalg.norm(points[45] - points[36]))
    nose_drop = max(1.0, float(points[30][1]) - eyes_y)
    move = np.array([[1.0, 0.0, -centre_x], [0.0, 1.0, -eyes_y], [0.0, 0.0, 1.0]])
    warp = np.eye(3)
    if a.turn_style in ("shear", "perspective"):
        # A perspective warp needs some shear to move the nose off the eyes' middle.
        share = 1.0 if a.turn_style == "shear" else 0.45
        k = turn * share * a.turn_strength * eye_distance / nose_drop
        warp = np.array([[1.0, k, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ warp
    if a.turn_style == "perspective":
        angle = turn * min(1.2, 2.2 * a.turn_strength)
        focal = 4.0 * eye_distance
        rotation = np.array([[math.cos(angle), 0.0, 0.0], [0.0, 1.0, 0.0], [-math.sin(angle) / focal, 0.0, 1.0]])
        warp = rotation @ warp
    result: npt.NDArray[np.float64] = np.linalg.inv(move) @ warp @ move
    return result


def _cylinder(image: Image_, points: Points, turn: float, a: Animation) -> Image_:
    """The photo wrapped round a cylinder with a bump for the nose, and the cylinder turned: the
    2.5-D head turn that face-animation scripts make from one picture (no side of the head appears
    that the photo does not show)."""
    eye_distance = float(np.linalg.norm(points[45] - points[36]))
    centre = float(points[27][0])
    radius = max(eye_distance, float(points[16][0] - points[0][0]) * 0.55)
    nose = points[30]
    angle = turn * min(0.8, 1.4 * a.turn_strength)
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    ratio = np.clip((xx - centre) / radius, -1.0, 1.0)
    outside = (xx - centre) - radius * ratio  # beyond the cylinder: moves with its edge
    source_x = centre + radius * np.sin(np.arcsin(ratio) - angle) + outside
    bump = (
        1.1
        * eye_distance
        * np.exp(
            -(
                ((xx - nose[0]) / (0.45 * eye_distance)) ** 2
                + ((yy - nose[1] + 0.2 * eye_distance) / (0.7 * eye_distance)) ** 2
            )
            / 2
        )
    )
    source_x -= bump * math.sin(angle)
    return _pixels(
        cv2.remap(
            image, source_x.astype(np.float32), yy.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
    )


# How far each of the 68 landmarks stands out of the face's plane, in eye distances: the nose
# forwards, the outline of the jaw backwards. A coarse stand-in for a 3-D face model.
_DEPTH = np.concatenate(
    [
        [-0.75, -0.65, -0.5, -0.35, -0.2, -0.05, 0.05, 0.12, 0.15, 0.12, 0.05, -0.05, -0.2, -0.35, -0.5, -0.65, -0.75],
        [0.05, 0.15, 0.2, 0.22, 0.22, 0.22, 0.22, 0.2, 0.15, 0.05],  # brows
        [0.15, 0.28, 0.42, 0.55, 0.3, 0.36, 0.4, 0.36, 0.3],  # nose
        [0.0, 0.05, 0.05, 0.02, 0.05, 0.05, 0.02, 0.05, 0.05, 0.0, 0.05, 0.05],  # eyes
        [0.15, 0.22, 0.27, 0.28, 0.27, 0.22, 0.15, 0.2, 0.25, 0.26, 0.25, 0.2],  # outer lips
        [0.18, 0.25, 0.26, 0.25, 0.18, 0.24, 0.25, 0.24],  # inner lips
    ]
)


def _mesh(image: Image_, points: Points, turn: float, a: Animation) -> Image_:
    """The landmarks moved as a head's would turn (`_DEPTH`), the picture warped smoothly to follow
    them (thin-plate spline): the nose leaves the eyes' middle, the far cheek narrows."""
    eye_distance = float(np.linalg.norm(points[45] - points[36]))
    angle = turn * min(0.75, 1.3 * a.turn_strength)
    centre_x = float(points[27][0])
    x = points[:, 0] - centre_x
    depth = _DEPTH * eye_distance
    moved = points.copy()
    moved[:, 0] = centre_x + x * math.cos(angle) + depth * math.sin(angle)
    height, width = image.shape[:2]
    # The picture's border stays put, so only the face moves.
    border = np.array(
        [
            [0, 0],
            [width / 2, 0],
            [width - 1, 0],
            [width - 1, height / 2],
            [width - 1, height - 1],
            [width / 2, height - 1],
            [0, height - 1],
            [0, height / 2],
        ],
        dtype=np.float64,
    )
    target = np.vstack([moved, border])
    source = np.vstack([points, border])
    return _thin_plate_warp(image, target, source)


def _thin_plate_warp(image: Image_, target: Points, source: Points, step: int = 8) -> Image_:
    """`image` warped so that what lies at `source` moves to `target`: the map from output pixels to
    source pixels is a thin-plate spline through the control points, evaluated on a coarse grid."""
    n = len(target)
    scale = float(max(image.shape[:2]))
    t = target / scale

    def kernel(d2: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        with np.errstate(divide="ignore", invalid="ignore"):
            result = np.where(d2 > 0, d2 * np.log(d2) / 2, 0.0)
        return result

    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = kernel(((t[:, None, :] - t[None, :, :]) ** 2).sum(-1)) + np.eye(n) * 1e-6
    system[:n, n] = 1
    system[:n, n + 1 :] = t
    system[n, :n] = 1
    system[n + 1 :, :n] = t.T
    values = np.zeros((n + 3, 2))
    values[:n] = source / scale
    weights = np.linalg.solve(system, values)
    height, width = image.shape[:2]
    gy, gx = np.mgrid[0 : height + step : step, 0 : width + step : step].astype(np.float64)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1) / scale
    k = kernel(((grid[:, None, :] - t[None, :, :]) ** 2).sum(-1))
    mapped = (k @ weights[:n] + weights[n] + grid @ weights[n + 1 :]) * scale
    map_x = cv2.resize(mapped[:, 0].reshape(gx.shape).astype(np.float32), (width, height))
    map_y = cv2.resize(mapped[:, 1].reshape(gx.shape).astype(np.float32), (width, height))
    return _pixels(cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))


def animate_photo(photo: Image_, actions: Sequence[Action], a: Animation, seed: int = 0) -> Clip:
    """A clip that performs `actions` in order, made from one still photo."""
    rng = np.random.default_rng(seed)
    points = face_points(photo)
    closed = paint_eyes_closed(photo, points, a.eye_paint)
    face_height = float(points[8][1] - min(points[19][1], points[24][1]))
    width, height = CANVAS
    base_scale = a.face_share * height / max(1.0, face_height)
    centre = points[27:36].mean(axis=0)
    poses = _timeline(actions, a)
    phase = rng.uniform(0, 2 * math.pi, size=2)
    mouths: dict[float, Image_] = {}
    frames = []
    for i, pose in enumerate(poses):
        progress = i / max(1, len(poses) - 1)
        source = closed if pose.eyes_closed else photo
        if pose.mouth > 0:
            key = round(pose.mouth, 2)
            if key not in mouths:
                mouths[key] = paint_mouth_open(photo, points, a.mouth_open * pose.mouth)
            source = mouths[key]
        scale = base_scale * (1 + a.zoom * progress)
        angle = math.radians(a.roll_deg * math.sin(2 * math.pi * progress + phase[0]))
        dx = a.drift_px * math.sin(2 * math.pi * 0.4 * i / FPS + phase[0])
        dy = a.drift_px * 0.6 * math.sin(2 * math.pi * 0.3 * i / FPS + phase[1])
        cos, sin = scale * math.cos(angle), scale * math.sin(angle)
        # Source face centre to the canvas' upper middle, scaled and rolled.
        tx = width / 2 + dx - (cos * centre[0] - sin * centre[1])
        ty = height * 0.45 + dy - (sin * centre[0] + cos * centre[1])
        placement = np.array([[cos, -sin, tx], [sin, cos, ty], [0.0, 0.0, 1.0]])
        warp = placement @ _turn_warp(points, pose.turn, a)
        if a.turn_style == "cylinder" and pose.turn:
            source = _cylinder(source, points, pose.turn, a)
        elif a.turn_style == "mesh" and pose.turn:
            source = _mesh(source, points, pose.turn, a)
        frame = cv2.warpPerspective(
            source, warp, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        if a.noise > 0:
            frame = np.clip(frame + rng.normal(0, a.noise, frame.shape), 0, 255).astype(np.uint8)
        frames.append(_pixels(frame))
    return Clip(tuple(frames))


# ---------------------------------------------------------------------------------------------
# Clips made from other clips
# ---------------------------------------------------------------------------------------------


def mirrored(clip: Clip) -> Clip:
    return replace(clip, frames=tuple(np.ascontiguousarray(f[:, ::-1]) for f in clip.frames))


def excerpt(clip: Clip, start: float = 0.2, end: float = 0.8) -> Clip:
    """The part of a clip between two fractions of its length."""
    n = len(clip.frames)
    return replace(clip, frames=clip.frames[round(start * n) : round(end * n)])


def spliced(host: Clip, insert: Clip, at_s: float) -> Clip:
    """`insert` (another person's frames, scaled to fit) cut into `host` at `at_s`."""
    height, width = host.frames[0].shape[:2]
    fitted = [
        _pixels(cv2.resize(_fill(f, width / height), (width, height), interpolation=cv2.INTER_AREA))
        for f in insert.frames
    ]
    # Resample the insert to the host's rate.
    count = round(len(fitted) * host.fps / insert.fps)
    resampled = [fitted[min(len(fitted) - 1, round(i * insert.fps / host.fps))] for i in range(count)]
    cut = round(at_s * host.fps)
    return replace(host, frames=(*host.frames[:cut], *resampled, *host.frames[cut:]))


def _fill(image: Image_, aspect: float) -> Image_:
    """The middle of `image` cropped to `aspect` (width / height)."""
    height, width = image.shape[:2]
    if width / height > aspect:
        keep = round(height * aspect)
        x0 = (width - keep) // 2
        return image[:, x0 : x0 + keep]
    keep = round(width / aspect)
    y0 = (height - keep) // 2
    return image[y0 : y0 + keep]


def segment(clip: Clip, start_s: float, end_s: float) -> Clip:
    return replace(clip, frames=clip.frames[round(start_s * clip.fps) : round(end_s * clip.fps)])


# ---------------------------------------------------------------------------------------------
# A photo on a screen or on paper, filmed
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Medium:
    """How a screen or a print shows in the camera: its border, moire or dots, glare."""

    kind: str = "screen"  # "screen" | "print"
    border: float = 0.06  # share of the frame the bezel or the paper's edge takes
    pattern: float = 0.12  # moire or halftone contrast
    period_px: float = 3.2
    angle_deg: float = 7.0
    glare: float = 0.35
    contrast: float = 0.85

    @classmethod
    def vary(cls, rng: random.Random, kind: str) -> Medium:
        return cls(
            kind=kind,
            border=rng.uniform(0.0, 0.1),
            pattern=rng.uniform(0.05, 0.2),
            period_px=rng.uniform(2.2, 5.0),
            angle_deg=rng.uniform(-15, 15),
            glare=rng.uniform(0.0, 0.5),
            contrast=rng.uniform(0.7, 0.95),
        )


def on_medium(clip: Clip, m: Medium, seed: int = 0) -> Clip:
    """The clip as filmed off a phone screen or a printed photo held before the camera."""
    rng = np.random.default_rng(seed)
    height, width = clip.frames[0].shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    theta = math.radians(m.angle_deg)
    u = xx * math.cos(theta) + yy * math.sin(theta)
    v = -xx * math.sin(theta) + yy * math.cos(theta)
    if m.kind == "screen":
        pattern = np.sin(2 * math.pi * u / m.period_px) * np.sin(2 * math.pi * v / (m.period_px * 1.7))
    else:
        pattern = np.cos(2 * math.pi * u / m.period_px) + np.cos(2 * math.pi * v / m.period_px)
        pattern = pattern / 2 + rng.normal(0, 0.3, pattern.shape)
    gx, gy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.1, 0.5) * height
    glare = m.glare * np.exp(-(((xx - gx) / (0.25 * width)) ** 2 + ((yy - gy) / (0.18 * height)) ** 2))
    gain = (1 + m.pattern * pattern)[..., None]
    border_px = round(m.border * min(width, height))
    frames = []
    for image in clip.frames:
        shown = image.astype(np.float64) * m.contrast + 255 * (1 - m.contrast) / 2
        shown = shown * gain + 255 * glare[..., None]
        if border_px:
            edge = (20, 20, 22) if m.kind == "screen" else (235, 232, 225)
            shown[:border_px], shown[-border_px:] = edge, edge
            shown[:, :border_px], shown[:, -border_px:] = edge, edge
        frames.append(np.clip(shown, 0, 255).astype(np.uint8))
    return replace(clip, frames=tuple(frames))


# ---------------------------------------------------------------------------------------------
# The classes, as the evaluation and the tests draw them
# ---------------------------------------------------------------------------------------------

EVERY_ACTION_TWICE = (*Action, *Action)
# What each live clip in the shared faces shows, in order, and its frames where a head turn is held
# (start, end in s), for splicing into another person's clip.
LIVE_TURNS: dict[str, tuple[tuple[Action, float, float], ...]] = {
    "live_turn__zubair_real.mov": ((Action.TURN_RIGHT, 6.2, 8.8), (Action.TURN_LEFT, 9.3, 10.8)),
}


@dataclass(frozen=True)
class Reference:
    """The impersonated person's enrolled reference: a photo file, or a clip's frame enrolled as a photo."""

    path: str
    at_s: float | None = None  # a clip's frame; None: the file is a photo


@dataclass(frozen=True)
class Attack:
    """One generated attack: the upload, whom it impersonates, what it answers, what came before it."""

    kind: str
    seed: int
    source: str  # what it was made from, for the report
    video: bytes
    reference: Reference
    # The challenge the clip was made for (an attacker who animates a photo makes one per draw);
    # None: one fixed clip, judged under every challenge the API may draw.
    made_for: tuple[Action, ...] | None
    earlier: tuple[bytes, ...] = ()  # uploads already submitted that this one replays
    earlier_by_other_person: bool = False


@dataclass(frozen=True)
class Library:
    """What attacks are made from: photos by identity (one face each) and live clips."""

    photos: dict[str, tuple[str, ...]]
    clips: dict[str, str]

    @classmethod
    def load(cls, faces: str, lfw_identities: int = 40) -> Library:
        """The shared stills of one person (not the spoof photos), the first `lfw_identities` of
        lfw-dev with two photos or more, and the live clips."""
        from pathlib import Path

        root = Path(faces)
        photos: dict[str, list[str]] = {}
        for path in sorted((root / "stills").glob("*.jp*g")):
            identity = path.name.split("__")[0]
            if identity not in ("multi", "sfas") and "partial" not in path.name and "res-" not in path.name:
                photos.setdefault(identity, []).append(str(path))
        lfw = sorted(p for p in (root / "lfw-dev").iterdir() if p.is_dir()) if (root / "lfw-dev").is_dir() else []
        for person in [p for p in lfw if len(list(p.glob("*.jpg"))) >= 2][:lfw_identities]:
            photos["lfw:" + person.name] = sorted(str(p) for p in person.glob("*.jpg"))
        clips = {p.name: str(p) for p in sorted((root / "video").glob("live_*"))}
        return cls({k: tuple(v) for k, v in photos.items()}, clips)


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _photo(path: str) -> Image_:
    from liveness.media import decode_still

    return decode_still(_read(path))


# An attacker has this open-source pipeline too: they film their fake again, stronger, until its
# detector sees every action (it is then judged by the whole check like any upload).
TUNING_ATTEMPTS = 3


def _in_order(wanted: Sequence[Action], detected: Sequence[Action]) -> bool:
    position = 0
    for action in detected:
        if position < len(wanted) and action == wanted[position]:
            position += 1
    return position == len(wanted)


def _animated(
    library: Library,
    rng: random.Random,
    actions: Sequence[Action],
    own_reference: bool,
    finish: Callable[[Clip], Clip] | None = None,
    brisk: bool = False,
) -> tuple[bytes, str, Reference]:
    from liveness.model import Media
    from liveness.pipeline import measure

    # An attacker picks a photo the face detector reads.
    for _ in range(20):
        identity = rng.choice(sorted(library.photos))
        photos = library.photos[identity]
        photo = rng.choice(photos)
        pixels = _photo(photo)
        try:
            face_points(pixels)
            break
        except ValueError:
            continue
    else:
        raise ValueError("no photo in the library shows a face the detector finds")
    others = [p for p in photos if p != photo]
    reference = Reference(photo if own_reference or not others else rng.choice(others))
    animation = Animation.vary(rng)
    if brisk:  # eight actions must fit into the 15 s analysed
        animation = replace(animation, lead_s=0.5, gap_s=0.45, turn_hold_s=0.6, mouth_hold_s=0.6)
    seed = rng.randrange(1 << 30)
    for _ in range(TUNING_ATTEMPTS):
        clip = animate_photo(pixels, actions, animation, seed)
        video = encode(finish(clip) if finish is not None else clip, animation.crf)
        if _in_order(actions, [found.action for found in measure(Media(video=video)).actions]):
            break
        animation = animation.stronger()
    return video, f"{photo} ({animation.turn_style}, {animation.eye_paint})", reference


def _live(library: Library, rng: random.Random) -> tuple[str, Clip]:
    name = rng.choice(sorted(library.clips))
    return name, decode(_read(library.clips[name]))


def _copy_of(clip: Clip, rng: random.Random) -> Clip:
    """What a re-upload does to a clip: cropped a little, rescaled."""
    height, width = clip.frames[0].shape[:2]
    crop = rng.uniform(0.0, 0.08)
    y0, x0 = round(crop * height), round(crop * width)
    scale = rng.uniform(0.7, 1.2)
    size = (max(64, round((width - 2 * x0) * scale)), max(64, round((height - 2 * y0) * scale)))
    return replace(
        clip, frames=tuple(_pixels(cv2.resize(f[y0 : height - y0, x0 : width - x0], size)) for f in clip.frames)
    )


def make(kind: str, library: Library, seed: int, challenge: tuple[Action, ...]) -> Attack:
    """Variant `seed` of attack class `kind`; `challenge` is the draw it answers where the attacker
    can make a clip per challenge."""
    rng = random.Random(f"{kind}:{seed}")
    crf = rng.choice((20, 23, 28))
    if kind in ("photo_animation", "reference_animation", "screen_replay", "print_replay"):
        medium = Medium.vary(rng, "screen" if kind == "screen_replay" else "print")

        def finish(clip: Clip) -> Clip:
            return on_medium(clip, medium, seed) if kind in ("screen_replay", "print_replay") else clip

        video, source, reference = _animated(library, rng, challenge, kind == "reference_animation", finish)
        return Attack(kind, seed, source, video, reference, challenge)
    if kind == "every_action_twice":
        video, source, reference = _animated(library, rng, EVERY_ACTION_TWICE, own_reference=False, brisk=True)
        return Attack(kind, seed, source, video, reference, None)
    if kind in ("mirrored_replay", "excerpt_replay", "cross_person_replay"):
        name, live = _live(library, rng)
        original = _read(library.clips[name])
        if kind == "mirrored_replay":
            copy = mirrored(_copy_of(live, rng))
        elif kind == "excerpt_replay":
            share = rng.uniform(0.5, 0.7)
            start = rng.uniform(0.1, 0.9 - share)
            copy = excerpt(_copy_of(live, rng), start, start + share)
        else:
            copy = _copy_of(live, rng) if rng.random() < 0.7 else live
        return Attack(
            kind,
            seed,
            name,
            encode(copy, crf),
            Reference(library.clips[name], 1.0),
            None,
            earlier=(original,),
            earlier_by_other_person=kind == "cross_person_replay",
        )
    if kind == "spliced_turn":
        donor, _ = rng.choice(sorted(LIVE_TURNS.items()))
        hosts = [name for name in library.clips if name != donor]
        host_name = rng.choice(hosts) if hosts else donor
        host = decode(_read(library.clips[host_name]))
        action, start, end = rng.choice(LIVE_TURNS[donor])
        length = rng.uniform(0.8, 1.3)
        begin = rng.uniform(start, max(start, end - length))
        insert = segment(decode(_read(library.clips[donor])), begin, begin + length)
        at_s = rng.uniform(0.3, 0.7) * host.duration_s
        clip = spliced(host, insert, at_s)
        source = f"{host_name} + {length:.1f} s of {donor}'s {action} at {at_s:.1f} s"
        return Attack(kind, seed, source, encode(clip, crf), Reference(library.clips[host_name], 1.0), None)
    raise ValueError(f"unknown attack class {kind!r}")


KINDS = (
    "photo_animation",
    "reference_animation",
    "every_action_twice",
    "mirrored_replay",
    "excerpt_replay",
    "spliced_turn",
    "cross_person_replay",
    "screen_replay",
    "print_replay",
)
