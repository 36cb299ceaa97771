"""The face's texture over time: a picture's chips stay a warp of each other, a living face's do not."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from liveness import texture
from liveness.faces import CHIP_PX, FaceChip

# Landmarks standing where face_chip puts a face's: they move nothing when chips share them.
POINTS = np.random.default_rng(0).uniform(20, 92, (68, 2))


def chip(pixels: np.ndarray) -> FaceChip:
    return FaceChip(pixels, POINTS)


def _face_like(seed: int) -> np.ndarray:
    """A chip-sized picture with structure at every scale (as skin, eyes and hair have)."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(
        rng.uniform(0, 255, (8, 8)).astype(np.float32), (CHIP_PX, CHIP_PX), interpolation=cv2.INTER_CUBIC
    )
    fine = cv2.GaussianBlur(rng.uniform(-60, 60, (CHIP_PX, CHIP_PX)).astype(np.float32), (0, 0), 1.5)
    return np.clip(coarse + fine, 0, 255).astype(np.uint8)


def _warped(chip: np.ndarray, strength: float) -> np.ndarray:
    """The same picture pushed about smoothly (as a photo warped into a fake turn)."""
    rows, columns = np.mgrid[0:CHIP_PX, 0:CHIP_PX].astype(np.float32)
    shift = strength * np.sin(rows / CHIP_PX * math.pi) * np.sin(columns / CHIP_PX * math.pi)
    return cv2.remap(chip, columns - shift, rows + 0.3 * shift, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_a_picture_warped_and_noised_leaves_little_residual() -> None:
    picture = _face_like(1)
    noisy = np.clip(_warped(picture, 6.0) + np.random.default_rng(2).normal(0, 3, picture.shape), 0, 255).astype(
        np.uint8
    )
    assert texture.residual(chip(picture), chip(noisy)) < texture.MIN_STILLNESS


def test_new_content_leaves_a_residual() -> None:
    picture = _face_like(1)
    changed = picture.copy()
    changed[:, 56:] = _face_like(3)[:, 56:]  # a side of the face that was hidden shows
    assert texture.residual(chip(picture), chip(changed)) > 3 * texture.MIN_STILLNESS
    assert texture.residual(chip(picture), chip(_face_like(2))) > texture.MIN_TURN_DEPTH  # another face altogether


def test_a_perspective_warp_is_undone_by_the_landmarks_homography() -> None:
    picture = _face_like(10)
    warp = np.array([[0.8, 0.25, 5.0], [-0.05, 1.0, 2.0], [0.002, 0.0, 1.0]])
    warped = cv2.warpPerspective(picture, warp, (CHIP_PX, CHIP_PX), borderMode=cv2.BORDER_REPLICATE)
    moved = cv2.perspectiveTransform(POINTS[None], warp)[0]
    assert texture.residual(chip(picture), FaceChip(warped, moved)) < texture.MIN_STILLNESS


def test_contrast_and_light_do_not_matter() -> None:
    picture = _face_like(4)
    lit = np.clip(picture * 0.6 + 40, 0, 255).astype(np.uint8)
    assert texture.residual(chip(picture), chip(lit)) < texture.MIN_STILLNESS


def test_stillness_compares_chips_apart_in_time() -> None:
    chips = [chip(_face_like(5))] * 3 + [chip(_face_like(6))] * 3
    assert texture.stillness([0.0, 0.1, 0.2, 0.8, 0.9, 1.0], chips, 0) > texture.MIN_TURN_DEPTH
    assert math.isnan(texture.stillness([0.0, 0.1, 0.2], chips[:3], 0))  # nothing far enough apart


def test_stillness_compares_the_same_pose_only() -> None:
    still = chip(_face_like(11))
    elsewhere = FaceChip(_face_like(12), POINTS + 6.0)  # another pose: not compared while the same pose is seen
    times = [0.0, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert texture.stillness(times, [still, elsewhere, still, still, still, still], 0) < texture.MIN_STILLNESS


def test_depth_without_chips_is_unknown() -> None:
    assert math.isnan(texture.depth([], chip(_face_like(7))))


@pytest.mark.parametrize("strength", [2.0, 8.0])
def test_depth_of_a_warp_is_shallow(strength: float) -> None:
    picture = _face_like(8)
    turned = [chip(_warped(picture, strength)), chip(_warped(picture, -strength))]
    assert texture.depth(turned, chip(picture)) < texture.MIN_TURN_DEPTH


def test_a_screens_grid_stands_out_of_a_faces_texture() -> None:
    face = cv2.resize(_face_like(9), (240, 240), interpolation=cv2.INTER_CUBIC)
    rows, columns = np.mgrid[0:240, 0:240]
    grid = 1 + 0.15 * np.sin(2 * math.pi * (columns * 0.96 + rows * 0.28) / 3.3)  # a slanted pixel grid
    screen = np.clip(face * grid, 0, 255).astype(np.uint8)
    assert texture.periodic_pattern(face) < texture.MAX_PATTERN < texture.periodic_pattern(screen)
    assert math.isnan(texture.periodic_pattern(face[:20, :20]))
