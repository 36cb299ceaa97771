"""Every attack class of the kit, made from the shared faces, against the pipeline: none passes.

A few variants per class here; `python -m tools.liveness.evaluate` runs 20 and more of each and reports
APCER (README). Each variant answers a challenge drawn as the API draws them, or, for a fixed
clip, is judged under every challenge the API may draw.
"""

from __future__ import annotations

import pytest

from liveness.model import Thresholds
from tests.conftest import FACES
from tools.liveness import attack_evaluation, attacks

VARIANTS = 1  # each test makes and measures its clips; the evaluation runs 20 of each class


@pytest.fixture(scope="module", autouse=True)
def _faces() -> None:
    if not FACES.is_dir():
        pytest.skip(f"face test data not found at {FACES} (see shared/faces/README.md)")


@pytest.mark.parametrize("kind", attacks.KINDS)
@pytest.mark.parametrize("seed", range(VARIANTS))
def test_no_attack_passes(kind: str, seed: int) -> None:
    trial = attack_evaluation.run_attack(attack_evaluation._Task(kind, 100 + seed, str(FACES), Thresholds()))
    assert trial.passed_share == 0.0, trial
    assert trial.reasons, trial


@pytest.mark.parametrize("clip", attack_evaluation.LIVE_CLIPS, ids=lambda clip: clip.name)
def test_every_live_clip_passes_the_challenge_it_performs(clip: attack_evaluation.LiveClip) -> None:
    trial = attack_evaluation.run_live(clip, str(FACES), Thresholds())
    assert (trial.outcome, trial.reasons) == ("passed", ()), trial
