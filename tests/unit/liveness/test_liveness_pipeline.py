"""The whole analysis on the real clips and photos in ../shared/faces.

Each clip is measured once (the expensive, challenge-independent part) and judged under as many
challenges as a test needs, which is what `analyse` does for one.
"""

from __future__ import annotations

import io
import itertools
import math
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from liveness import faces, texture
from liveness.media import decode_video
from liveness.model import Action, Analysis, EarlierSubmission, Embedding, Media, Outcome, Reason
from liveness.pipeline import Measurements, analyse, enroll, judge, measure, reference_from_video

FACES = Path(__file__).resolve().parents[3].parent / "shared" / "faces"
if not FACES.is_dir():
    pytest.skip(f"face test data not found at {FACES} (a clone outside the workplace)", allow_module_level=True)

VIDEO, STILLS = FACES / "video", FACES / "stills"
POLICIES = [list(p) for n in (1, 2, 3) for p in itertools.permutations(list(Action), n)]


def frame_reference(video: Path, at_s: float) -> Embedding:
    """The reference a clip's own frame gives, enrolled like an imported photo."""
    reference = reference_from_video(video.read_bytes(), at_s)
    assert reference is not None, f"{video.name} at {at_s} s"
    return reference


def encoded(pictures: list[Image.Image], fps: int = 30, scale: float = 1.0) -> bytes:
    width, height = (2 * round(pictures[0].width * scale / 2), 2 * round(pictures[0].height * scale / 2))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for picture in pictures:
            pixels = np.asarray(picture.convert("RGB").resize((width, height)))
            output.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        output.mux(stream.encode())
    return buffer.getvalue()


def photo_clip(path: Path, count: int = 60) -> bytes:
    """A still photo made into a clip: shifted and zoomed a little on every frame, as if waved."""
    photo = Image.open(path).convert("RGB")
    photo = photo.resize((photo.width // 2, photo.height // 2))
    width, height = photo.size
    pictures = []
    for i in range(count):
        zoom, dx, dy = 1 + 0.05 * math.sin(i / 9), 6 * math.sin(i / 7), 4 * math.cos(i / 5)
        shift_x, shift_y = dx + (width - width / zoom) / 2, dy + (height - height / zoom) / 2
        pictures.append(
            photo.transform(photo.size, Image.Transform.AFFINE, (1 / zoom, 0, shift_x, 0, 1 / zoom, shift_y))
        )
    return encoded(pictures)


def earlier(check_id: str, analysis: Analysis) -> EarlierSubmission:
    return EarlierSubmission(
        check_id, analysis.sha256, analysis.embedding, analysis.frame_hashes, analysis.frame_times, analysis.actions
    )


@pytest.fixture(scope="module")
def blink() -> Measurements:
    return measure(Media(video=(VIDEO / "live_blink__eye_blink.mp4").read_bytes()))


@pytest.fixture(scope="module")
def blink_reference() -> Embedding:
    return frame_reference(VIDEO / "live_blink__eye_blink.mp4", 1.0)


@pytest.fixture(scope="module")
def turns() -> Measurements:
    return measure(Media(video=(VIDEO / "live_turn__zubair_real.mov").read_bytes()))


@pytest.fixture(scope="module")
def zubair_reference() -> Embedding:
    return frame_reference(VIDEO / "live_turn__zubair_real.mov", 0.5)


@pytest.fixture(scope="module")
def hamilton() -> Measurements:
    return measure(Media(video=(VIDEO / "not_selfie__hamilton_clip.mp4").read_bytes()))


def test_a_live_blink_passes_a_blink_challenge(blink: Measurements, blink_reference: Embedding) -> None:
    analysis = judge(blink, [Action.BLINK], blink_reference, [])
    assert (analysis.outcome, analysis.reasons) == (Outcome.PASSED, ())
    assert analysis.scores["match_distance"] <= 0.3
    assert analysis.scores["stillness"] > texture.MIN_STILLNESS  # a still sitter, but alive
    assert sum(a.action is Action.BLINK for a in analysis.actions) >= 5  # the clip has 7 natural blinks
    assert 3 <= len(analysis.review_frames) <= 6
    for review in analysis.review_frames:
        with Image.open(io.BytesIO(review)) as image:
            assert image.format == "JPEG"
            assert max(image.size) <= 360
    assert analysis.embedding is not None
    assert analysis.embedding.shape == (128,)
    assert len(analysis.sha256) == 64
    assert len(analysis.frame_hashes) >= 10


def test_a_clip_without_the_challenged_action_fails(blink: Measurements, blink_reference: Embedding) -> None:
    analysis = judge(blink, [Action.TURN_LEFT], blink_reference, [])
    assert (analysis.outcome, analysis.reasons) == (Outcome.FAILED, (Reason.ACTION_NOT_DETECTED,))


def test_live_head_turns_pass_the_challenge_performed(turns: Measurements, zubair_reference: Embedding) -> None:
    # The clip opens the mouth (a smile held through a word), turns right, turns left, blinking now and then.
    analysis = judge(turns, [Action.OPEN_MOUTH, Action.TURN_RIGHT, Action.TURN_LEFT], zubair_reference, [])
    assert (analysis.outcome, analysis.reasons) == (Outcome.PASSED, ())
    # A living face: its texture changes, and its turns show depth (liveness.texture).
    assert analysis.scores["stillness"] > 2 * texture.MIN_STILLNESS
    assert analysis.scores["turn_depth"] > 1.5 * texture.MIN_TURN_DEPTH


@pytest.mark.parametrize(
    ("challenge", "reason"),
    [
        ([Action.TURN_RIGHT, Action.TURN_LEFT], Reason.EXTRA_ACTION),  # the mouth was not asked for
        ([Action.OPEN_MOUTH, Action.TURN_LEFT, Action.TURN_RIGHT], Reason.WRONG_ORDER),
        ([Action.OPEN_MOUTH, Action.TURN_RIGHT, Action.BLINK], Reason.EXTRA_ACTION),
        ([Action.OPEN_MOUTH, Action.BLINK, Action.TURN_RIGHT, Action.TURN_LEFT][:3], Reason.EXTRA_ACTION),
    ],
)
def test_live_head_turns_fail_a_challenge_not_performed_exactly(
    turns: Measurements, zubair_reference: Embedding, challenge: list[Action], reason: Reason
) -> None:
    analysis = judge(turns, challenge, zubair_reference, [])
    assert (analysis.outcome, analysis.reasons) == (Outcome.FAILED, (reason,))


def test_the_turns_are_found_where_they_happen(turns: Measurements, zubair_reference: Embedding) -> None:
    found = judge(turns, [Action.BLINK], zubair_reference, []).actions
    right = next(a for a in found if a.action is Action.TURN_RIGHT)
    left = next(a for a in found if a.action is Action.TURN_LEFT)
    assert 5.0 <= right.at_s <= 8.4
    assert 8.4 <= left.at_s <= 10.5


def test_a_screen_replay_passes_no_challenge(zubair_reference: Embedding) -> None:
    replayed = measure(Media(video=(VIDEO / "replay_screen__zubair_fake.mp4").read_bytes()))
    for challenge in POLICIES:
        analysis = judge(replayed, challenge, zubair_reference, [])
        assert analysis.outcome is Outcome.FAILED, challenge
        assert Reason.MULTIPLE_FACES in analysis.reasons, challenge


def test_a_photo_made_into_a_clip_passes_no_challenge() -> None:
    photo = STILLS / "obama__obama.jpg"
    reference = enroll(photo.read_bytes()).embedding
    assert reference is not None
    still = measure(Media(video=photo_clip(photo)))
    for challenge in POLICIES:
        analysis = judge(still, challenge, reference, [])
        assert analysis.outcome is Outcome.FAILED, challenge
        assert Reason.NO_MOTION in analysis.reasons, challenge
    assert analysis.scores["match_distance"] < 0.2, "the photo matches: liveness must stop it"


@pytest.mark.parametrize("reference_at_s", [None, 5.3], ids=["someone else", "the man on stage"])
def test_a_film_clip_is_not_a_selfie(
    hamilton: Measurements, blink_reference: Embedding, reference_at_s: float | None
) -> None:
    clip = VIDEO / "not_selfie__hamilton_clip.mp4"
    reference = blink_reference if reference_at_s is None else frame_reference(clip, reference_at_s)
    analysis = judge(hamilton, [Action.TURN_RIGHT], reference, [])
    assert analysis.outcome is Outcome.FAILED
    assert {Reason.MULTIPLE_FACES, Reason.IDENTITY_CHANGED, Reason.NO_FACE} & set(analysis.reasons)


def test_a_burst_of_a_photo_with_two_people_fails(blink_reference: Embedding) -> None:
    still = (STILLS / "multi__obama_and_biden.jpg").read_bytes()
    analysis = analyse(Media(frames=(still,) * 12), [Action.BLINK], blink_reference, [])
    assert analysis.outcome is Outcome.FAILED
    assert analysis.reasons[0] is Reason.MULTIPLE_FACES


def test_an_impostor_is_not_the_same_person(blink: Measurements) -> None:
    impostor = enroll(next((FACES / "lfw-dev" / "Ai_Sugiyama").glob("*.jpg")).read_bytes()).embedding
    assert impostor is not None
    analysis = judge(blink, [Action.BLINK], impostor, [])
    assert (analysis.outcome, analysis.reasons) == (Outcome.FAILED, (Reason.NOT_SAME_PERSON,))
    assert analysis.scores["match_distance"] > 0.6


@pytest.mark.parametrize("reference", [np.zeros(0), np.full(128, np.nan)], ids=["empty", "nan"])
def test_without_a_reference_a_live_clip_goes_to_review(blink: Measurements, reference: Embedding) -> None:
    analysis = judge(blink, [Action.BLINK], reference, [])
    assert (analysis.outcome, analysis.reasons) == (Outcome.NEEDS_REVIEW, (Reason.REFERENCE_MISSING,))


def test_a_resubmitted_clip_is_a_replay(blink: Measurements, turns: Measurements, blink_reference: Embedding) -> None:
    first = judge(blink, [Action.BLINK], blink_reference, [])
    again = judge(blink, [Action.BLINK], blink_reference, [earlier("check-1", first)])
    assert (again.outcome, again.reasons, again.replay_of) == (
        Outcome.NEEDS_REVIEW,
        (Reason.REPLAYED_MEDIA,),
        "check-1",
    )

    pictures = [Image.fromarray(f.image) for f in decode_video((VIDEO / "live_blink__eye_blink.mp4").read_bytes())]
    copy = judge(
        measure(Media(video=encoded(pictures, fps=15, scale=0.8))),
        [Action.BLINK],
        blink_reference,
        [earlier("check-1", first)],
    )
    assert copy.sha256 != first.sha256
    assert copy.replay_of == "check-1", copy.scores
    assert copy.outcome is Outcome.NEEDS_REVIEW

    other = judge(turns, [Action.BLINK], blink_reference, [earlier("check-1", first)])
    assert other.replay_of is None


@pytest.mark.parametrize(
    "upload",
    [
        Media(video=b""),
        Media(video=b"not a video\n" * 100),
        Media(frames=(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,)),
        Media(video=encoded([Image.new("RGB", (320, 240), (128, 128, 128))] * 30, fps=15)),
        Media(video=encoded([Image.effect_noise((320, 240), 60).convert("RGB") for _ in range(20)], fps=15)),
    ],
    ids=["empty", "text", "broken png", "grey clip", "noise clip"],
)
def test_bad_media_is_an_outcome_not_an_exception(upload: Media, blink_reference: Embedding) -> None:
    analysis = analyse(upload, [Action.BLINK], blink_reference, [])
    assert analysis.outcome in (Outcome.FAILED, Outcome.RETRY)
    assert analysis.reasons[0] in (Reason.UNREADABLE_MEDIA, Reason.NO_FACE, Reason.TOO_DARK)


@pytest.mark.parametrize("upload", [Media(video=b""), Media(frames=(b"GIF89a",))], ids=["empty", "not an image"])
def test_unreadable_media_fails_rather_than_asking_to_film_again(upload: Media) -> None:
    analysis = analyse(upload, [Action.BLINK], None, [])
    assert (analysis.outcome, analysis.reasons, analysis.scores) == (Outcome.FAILED, (Reason.UNREADABLE_MEDIA,), {})
    assert len(analysis.sha256) == 64


def test_a_reference_from_a_clip_is_its_frame_enrolled_as_a_photo(blink_reference: Embedding) -> None:
    data = (VIDEO / "live_blink__eye_blink.mp4").read_bytes()
    frame = next(f for f in decode_video(data) if f.t >= 1.0)
    photo = io.BytesIO()
    Image.fromarray(frame.image).save(photo, format="JPEG", quality=92)
    enrolled = enroll(photo.getvalue()).embedding
    assert enrolled is not None
    assert np.array_equal(blink_reference, enrolled)
    assert reference_from_video(data, 60.0) is None  # the clip ends before
    assert reference_from_video(b"not a video", 0.0) is None


def test_a_malformed_challenge_is_a_programming_error(blink: Measurements, blink_reference: Embedding) -> None:
    with pytest.raises(ValueError, match="distinct"):
        judge(blink, [Action.BLINK, Action.BLINK], blink_reference, [])
    with pytest.raises(ValueError, match="distinct"):
        judge(blink, [], blink_reference, [])


def test_enroll_a_portrait() -> None:
    enrolled = enroll((STILLS / "obama__obama.jpg").read_bytes())
    assert enrolled.reasons == ()
    assert enrolled.embedding is not None
    assert enrolled.embedding.shape == (128,)
    other = enroll((STILLS / "obama__obama2.jpg").read_bytes()).embedding
    assert other is not None
    assert np.linalg.norm(enrolled.embedding - other) < 0.6


def test_enroll_needs_exactly_one_face() -> None:
    assert enroll((STILLS / "multi__two_people.jpg").read_bytes()).reasons == (Reason.MULTIPLE_FACES,)
    blank = io.BytesIO()
    Image.new("RGB", (640, 480), (200, 200, 200)).save(blank, format="JPEG")
    assert enroll(blank.getvalue()).reasons == (Reason.NO_FACE,)
    assert enroll(b"GIF89a").reasons == (Reason.UNREADABLE_MEDIA,)


def test_enroll_turns_a_phone_photo_upright_first() -> None:
    data = (STILLS / "sfas__image_T1.jpg").read_bytes()
    assert enroll(data).embedding is not None
    sideways = io.BytesIO()
    Image.open(io.BytesIO(data)).save(sideways, format="JPEG")  # the same pixels, without the EXIF orientation
    assert enroll(sideways.getvalue()).reasons == (Reason.NO_FACE,)


def test_landmarks_come_in_ibug_order() -> None:
    image = np.asarray(Image.open(STILLS / "obama__obama.jpg").convert("RGB"))
    (box,) = faces.detect_still(image)
    points = faces.landmarks(image, box)
    assert points.shape == (68, 2)
    assert points[36, 0] < points[39, 0] < points[42, 0] < points[45, 0]  # eye corners, image left to right
    assert points[48, 0] < points[62, 0] < points[54, 0]  # mouth corners around the inner upper lip
    assert points[27, 1] < points[30, 1] < points[8, 1]  # nose bridge above nose tip above chin
    assert (points[61:64, 1] <= points[67:64:-1, 1] + 1).all()  # inner upper lip above inner lower lip
