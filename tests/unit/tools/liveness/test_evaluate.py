"""The evaluation's statistics on known values, and one small real run over lfw-dev."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from liveness.model import Action, Outcome, Thresholds
from tools.liveness import evaluate
from tools.liveness.attack_evaluation import Trial, bpcer, class_rates, cue_margins, weighted_pass
from tools.liveness.evaluate import (
    MAX_GENUINE_FLAGGED,
    band_shares,
    bootstrap_rates,
    confident_threshold_at_fmr,
    distance_matrix,
    enumerate_pairs,
    matched,
    not_matched,
    propose_replay_threshold,
    round_down,
    rule_of_three,
    threshold_at_fmr,
    wilson_interval,
)

FACES = Path(__file__).resolve().parents[4].parent / "shared" / "faces"


@pytest.mark.parametrize(
    ("count", "total", "low", "high"),
    [
        (0, 10, 0.0, 0.27753),
        (1, 10, 0.01787, 0.40415),
        (5, 10, 0.23659, 0.76341),
        (10, 10, 0.72247, 1.0),
        (0, 1000, 0.0, 0.00383),
    ],
)
def test_wilson_interval_known_values(count: int, total: int, low: float, high: float) -> None:
    assert wilson_interval(count, total) == pytest.approx((low, high), abs=1e-5)


def test_wilson_interval_is_exact_at_the_edges() -> None:
    assert wilson_interval(0, 929_529)[0] == 0.0
    assert wilson_interval(7, 7)[1] == 1.0


def test_wilson_interval_without_trials_says_nothing() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_rule_of_three() -> None:
    assert rule_of_three(300) == pytest.approx(0.01)
    assert rule_of_three(2) == 1.0
    # It approximates the exact bound 1 - 0.05^(1/n) for large n.
    assert rule_of_three(10_000) == pytest.approx(1 - 0.05 ** (1 / 10_000), rel=0.01)


def test_threshold_at_fmr_allows_exactly_the_target_share() -> None:
    impostor = np.random.default_rng(1).permutation(np.arange(1, 1001) / 1000)
    threshold = threshold_at_fmr(impostor, 1e-2)
    assert 0.010 <= threshold < 0.011
    assert matched(impostor, threshold) == 10
    assert matched(impostor, 0.011) == 11


def test_threshold_at_fmr_below_one_error_stays_under_the_nearest_impostor() -> None:
    impostor = np.array([0.5, 0.7, 0.9])
    threshold = threshold_at_fmr(impostor, 1e-4)
    assert threshold < 0.5
    assert matched(impostor, threshold) == 0


def test_round_down_keeps_the_bound() -> None:
    assert round_down(0.46999) == 0.469
    assert round_down(0.538) == 0.538


def test_rates_use_distance_at_or_below_as_a_match() -> None:
    distances = np.array([0.4, 0.5, 0.6])
    assert matched(distances, 0.5) == 2
    assert not_matched(distances, 0.5) == 1


def test_enumerate_pairs_splits_genuine_and_impostor() -> None:
    (g1, g2), (i1, i2) = enumerate_pairs(np.array([0, 0, 1, 2, 2], dtype=np.intp))
    assert sorted(zip(g1.tolist(), g2.tolist(), strict=True)) == [(0, 1), (3, 4)]
    impostor = sorted(zip(i1.tolist(), i2.tolist(), strict=True))
    assert len(impostor) == 10 - 2
    assert (0, 2) in impostor
    assert (2, 3) in impostor
    assert all(a < b for a, b in impostor)


def test_distance_matrix_matches_direct_norms() -> None:
    points = np.random.default_rng(2).normal(size=(6, 128))
    direct = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=2)
    assert distance_matrix(points) == pytest.approx(direct, abs=1e-9)
    assert np.all(np.diag(distance_matrix(points)) == 0.0)


def test_bootstrap_rates_bracket_the_observed_rates() -> None:
    # Two tight clusters per identity, far apart: no errors at 0.5, all impostors accepted at 100.
    rng = np.random.default_rng(3)
    identity = np.repeat(np.arange(8), 3).astype(np.intp)
    points = identity[:, None] * 10.0 + rng.normal(scale=0.01, size=(identity.size, 4))
    distances = distance_matrix(points)
    assert bootstrap_rates(distances, identity, 0.5, replicates=200) == ((0.0, 0.0), (0.0, 0.0))
    assert bootstrap_rates(distances, identity, 1e-6, replicates=200)[1] == (1.0, 1.0)
    assert bootstrap_rates(distances, identity, 1e3, replicates=200)[0] == (1.0, 1.0)


def test_bootstrap_widens_when_errors_concentrate_in_one_identity() -> None:
    # Identity 0 lies close to identity 1; every other identity is far from all. Observed FMR is
    # small, but resampling identities moves it a lot, as one look-alike pair of people would.
    identity = np.repeat(np.arange(10), 2).astype(np.intp)
    centres = np.arange(10, dtype=np.float64) * 10.0
    centres[1] = 0.3
    points = np.stack([centres[identity], np.tile([0.0, 0.1], 10)], axis=1)
    distances = distance_matrix(points)
    (fmr_low, fmr_high), _ = bootstrap_rates(distances, identity, 0.5, replicates=500)
    (i1, i2) = enumerate_pairs(identity)[1]
    observed = matched(distances[i1, i2], 0.5) / i1.size
    assert fmr_low < observed < fmr_high
    assert fmr_low == 0.0


def test_band_shares() -> None:
    bands = band_shares(np.array([0.3, 0.469, 0.5, 0.6, 0.7]), Thresholds())
    assert (bands.accept, bands.review, bands.reject) == pytest.approx((0.4, 0.4, 0.2))


def test_replay_threshold_catches_every_copy_when_they_separate() -> None:
    assert propose_replay_threshold(np.array([0.04, 0.08, 0.131]), np.array([0.31, 0.5])) == 0.14


def test_replay_threshold_flags_few_genuine_pairs_when_they_overlap() -> None:
    copies = np.array([0.1, 0.2, 0.3, 0.4])
    genuine = np.linspace(0.25, 1.0, 2000)
    threshold = propose_replay_threshold(copies, genuine)
    assert threshold == 0.25
    assert np.mean(genuine <= threshold) <= MAX_GENUINE_FLAGGED


def test_confident_threshold_keeps_the_bootstrap_upper_bound_within_the_target() -> None:
    rng = np.random.default_rng(4)
    identity = np.repeat(np.arange(30), 3).astype(np.intp)
    points = rng.normal(size=(30, 8))[identity] + rng.normal(scale=0.4, size=(identity.size, 8))
    distances = distance_matrix(points)
    impostor = distances[enumerate_pairs(identity)[1]]
    target = 0.02
    confident = confident_threshold_at_fmr(distances, identity, impostor, target)
    point = threshold_at_fmr(impostor, target)
    assert confident < point
    assert bootstrap_rates(distances, identity, confident)[0][1] <= target
    # The largest such threshold: letting the next impostor pair through breaks the bound.
    next_pair = float(np.min(impostor[impostor > confident]))
    assert bootstrap_rates(distances, identity, next_pair)[0][1] > target


def _trial(kind: str, passed: float, reasons: tuple[str, ...] = (), **scores: float) -> Trial:
    return Trial(kind, "src", 0, passed, "passed" if passed == 1 else "failed", reasons, scores)


def test_a_fixed_clip_passes_as_often_as_the_challenges_it_passes_are_drawn() -> None:
    odds = {(Action.BLINK, Action.TURN_LEFT): 0.25, (Action.TURN_LEFT, Action.BLINK): 0.75}
    outcomes = {(Action.BLINK, Action.TURN_LEFT): Outcome.PASSED, (Action.TURN_LEFT, Action.BLINK): Outcome.FAILED}
    assert weighted_pass(outcomes, odds) == 0.25


def test_class_rates_weigh_variants_alike_and_bound_a_clean_record() -> None:
    trials = [
        _trial("photo_animation", 0.0, ("no_motion",)),
        _trial("photo_animation", 0.0, ("no_motion", "extra_action")),
        _trial("mirrored_replay", 0.5, ("replayed_media",)),
        _trial("mirrored_replay", 0.0),
        _trial("bona_fide", 1.0),
    ]
    photo, mirrored = class_rates(trials)
    assert (photo.kind, photo.variants, photo.apcer, photo.passed_any) == ("photo_animation", 2, 0.0, 0)
    assert photo.upper_95 == 1.0  # three over two attempts: nothing shown yet
    assert photo.reasons == {"no_motion": 2, "extra_action": 1}
    assert (mirrored.apcer, mirrored.passed_any) == (0.25, 1)


def test_bpcer_counts_live_attempts_turned_away() -> None:
    trials = [_trial("bona_fide", 1.0), _trial("bona_fide", 0.0), _trial("photo_animation", 1.0)]
    assert bpcer(trials) == (1, 2)


def test_cue_margins_name_the_nearest_live_clip_and_the_nearest_attack_stopped() -> None:
    trials = [
        _trial("bona_fide", 1.0, stillness=0.2),
        _trial("bona_fide", 1.0, stillness=0.12),
        _trial("photo_animation", 0.0, stillness=0.03),
        _trial("photo_animation", 0.0, stillness=0.05),
        _trial("screen_replay", 0.0, stillness=0.09),  # not stopped by this cue
        _trial("spliced_turn", 0.0, largest_jump=0.9),
        _trial("bona_fide", 1.0, largest_jump=0.1),
    ]
    cues = {"stillness": ("above", 0.065), "largest_jump": ("below", 0.5)}
    assert cue_margins(trials, cues) == [("stillness", 0.065, 0.12, 0.05, 2), ("largest_jump", 0.5, 0.1, 0.9, 1)]


def _must_not_encode(task: tuple[str, str]) -> evaluate.ImageEncoding:
    raise AssertionError(f"{task[0]} was encoded again, not read from the cache")


def test_small_real_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    if not FACES.is_dir():
        pytest.skip(f"face test data not found at {FACES} (see shared/faces/README.md)")
    args = [str(FACES / "lfw-dev"), "--limit-identities", "5", "--cache", str(tmp_path / "cache.json")]
    assert evaluate.main([*args, "--json", str(tmp_path / "first.json"), "--markdown"]) == 0
    text = capsys.readouterr().out
    assert "failure to acquire" in text
    assert "| genuine |" in text  # the Markdown block

    result = json.loads((tmp_path / "first.json").read_text())
    lfw = result["lfw"]
    assert lfw["identities"] == 5
    assert lfw["images"] >= 10
    assert lfw["genuine"]["count"] > 0
    assert lfw["impostor"]["count"] > lfw["genuine"]["count"]
    assert [r["role"] for r in lfw["thresholds"]][:2] == ["accept", "reject"]
    assert math.isclose(lfw["thresholds"][0]["threshold"], Thresholds().accept_distance)
    # Same person's photos lie closer than different people's, and copies closer than either.
    assert lfw["genuine"]["quantiles"]["median"] < lfw["impostor"]["quantiles"]["median"]
    copies = result["replay"]["copies"][evaluate.REPLAY_BASIS]
    assert copies["quantiles"]["median"] < lfw["genuine"]["quantiles"]["median"]

    # A rerun reads every encoding from the cache (encoding one fails the run) and reports the same figures.
    monkeypatch.setattr(evaluate, "encode_file", _must_not_encode)
    assert evaluate.main([*args, "--json", str(tmp_path / "second.json"), "--accept", "0.5"]) == 0
    capsys.readouterr()
    second = json.loads((tmp_path / "second.json").read_text())
    assert second["lfw"]["genuine"] == lfw["genuine"]
    assert second["thresholds"]["accept_distance"] == 0.5
