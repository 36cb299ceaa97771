"""Measure the face matcher and the liveness pipeline on labelled data: `python -m tools.liveness.evaluate DIR`.

DIR holds identities as DIR/<Person>/*.jpg (or DIR/lfw-dev/<Person>/*.jpg when DIR is the shared
faces root) and, optionally, labelled videos as DIR/video/<label>__<name>.<ext>. The report gives:
  1. failure-to-acquire: images where face_recognition does not find exactly one face;
  2. the distances of all genuine pairs (same person) and all impostor pairs (different people);
  3. FMR and FNMR at the configured thresholds, the thresholds that reach FMR 1e-3/1e-4/1e-5 on this
     data (and with a by-identity bootstrap's upper bound), and how the accept / review / reject
     bands split genuine and impostor pairs;
  4. replay calibration: how far re-compressed and rescaled copies of a photo lie from the original;
  5. liveness (tools.liveness.attack_evaluation): APCER of every attack class of the kit on the challenges
     the API draws, BPCER of live clips on the challenges they perform, and each cue's margins.
Statistics are pure functions over arrays; reading files, encoding and printing stay in the shell
at the bottom of the module.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from liveness import texture
from liveness.media import Image_, decode_still
from liveness.model import Embedding, Thresholds
from tools.liveness import attacks
from tools.liveness.attack_evaluation import Trial, bpcer, class_rates, cue_margins, evaluate, still_patterns

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

Z95 = 1.959963984540054  # two-sided 95% normal quantile
QUANTILES: tuple[tuple[str, float], ...] = (
    ("min", 0.0),
    ("p1", 0.01),
    ("p5", 0.05),
    ("p25", 0.25),
    ("median", 0.5),
    ("p75", 0.75),
    ("p95", 0.95),
    ("p99", 0.99),
    ("max", 1.0),
)
FMR_TARGETS = (1e-3, 1e-4, 1e-5)
MAX_GENUINE_FLAGGED = 1e-3  # share of different photos of one person a replay threshold may call copies
HISTOGRAM_BIN = 0.05
HISTOGRAM_TOP = 1.0  # dlib distances rarely pass 1.0; larger ones land in the last bin
BOOTSTRAP_REPLICATES = 1000
BOOTSTRAP_SEED = 20240601  # fixed so reruns print the same intervals
# Copies of a photo as a re-upload makes them: (scale, JPEG quality or None for lossless).
REPLAY_COPIES: dict[str, tuple[float, int | None]] = {
    "jpeg q60": (1.0, 60),
    "0.75x": (0.75, None),
    "0.75x+jpeg q60": (0.75, 60),
}
REPLAY_BASIS = "0.75x+jpeg q60"  # the harshest copy, the one the replay threshold is proposed from
DEFAULT_CACHE = Path("var/liveness-evaluate-cache.json")

# ---------------------------------------------------------------------------------------------
# Statistics (pure)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proportion:
    count: int
    total: int
    share: float
    low: float  # Wilson score 95% interval
    high: float


def wilson_interval(count: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval: unlike the normal approximation it stays inside [0, 1] and is
    usable at 0 errors, which is where biometric error rates live."""
    if total == 0:
        return 0.0, 1.0
    p = count / total
    z2 = z * z
    denominator = 1 + z2 / total
    centre = (p + z2 / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / denominator
    # At 0 or all errors the bound is exact; computed, it is off by rounding (3e-18 instead of 0).
    low = 0.0 if count == 0 else centre - half
    high = 1.0 if count == total else centre + half
    return low, high


def proportion(count: int, total: int) -> Proportion:
    low, high = wilson_interval(count, total)
    return Proportion(count, total, count / total if total else 0.0, low, high)


def rule_of_three(total: int) -> float:
    """95% upper bound on a rate after 0 errors in `total` independent trials (-ln 0.05 ~ 3)."""
    return min(1.0, 3 / total) if total else 1.0


@dataclass(frozen=True)
class Distribution:
    count: int
    quantiles: dict[str, float]
    histogram: tuple[int, ...]  # counts per HISTOGRAM_BIN from 0; the last bin takes everything above


def histogram_edges() -> FloatArray:
    return np.linspace(0.0, HISTOGRAM_TOP, round(HISTOGRAM_TOP / HISTOGRAM_BIN) + 1)


def distribution(values: FloatArray) -> Distribution:
    if values.size == 0:
        return Distribution(0, {name: math.nan for name, _ in QUANTILES}, ())
    quantiles = np.quantile(values, [q for _, q in QUANTILES])
    edges = histogram_edges()
    counts, _ = np.histogram(np.clip(values, 0.0, HISTOGRAM_TOP), bins=edges)
    return Distribution(
        int(values.size),
        {name: float(v) for (name, _), v in zip(QUANTILES, quantiles, strict=True)},
        tuple(int(c) for c in counts),
    )


def distance_matrix(embeddings: FloatArray) -> FloatArray:
    """All Euclidean distances at once through the Gram matrix (a broadcast difference of 1.4k x
    1.4k x 128 floats would need 2 GB)."""
    squares = np.einsum("ij,ij->i", embeddings, embeddings)
    d2 = squares[:, None] + squares[None, :] - 2.0 * (embeddings @ embeddings.T)
    np.fill_diagonal(d2, 0.0)
    distances: FloatArray = np.sqrt(np.clip(d2, 0.0, None))
    return distances


def enumerate_pairs(labels: IndexArray) -> tuple[tuple[IndexArray, IndexArray], tuple[IndexArray, IndexArray]]:
    """Every unordered pair of distinct images, split into genuine (same label) and impostor."""
    first, second = np.triu_indices(labels.size, k=1)
    same = labels[first] == labels[second]
    return (first[same], second[same]), (first[~same], second[~same])


def matched(distances: FloatArray, threshold: float) -> int:
    """Pairs accepted as one person: a match is a distance at or below the threshold."""
    return int(np.count_nonzero(distances <= threshold))


def not_matched(distances: FloatArray, threshold: float) -> int:
    return int(np.count_nonzero(distances > threshold))


def threshold_at_fmr(impostor: FloatArray, target: float) -> float:
    """The largest threshold whose false match rate on `impostor` does not exceed `target`."""
    ordered = np.sort(impostor)
    allowed = math.floor(target * ordered.size)
    if allowed >= ordered.size:
        return float(ordered[-1])
    # Accepting means distance <= threshold, so stay just below the first distance not allowed.
    return float(np.nextafter(ordered[allowed], -np.inf))


def round_down(value: float, decimals: int = 3) -> float:
    """Round towards stricter matching, so a calibrated threshold keeps its FMR bound when printed."""
    scale = 10.0**decimals
    return math.floor(value * scale) / scale


def bootstrap_rates(
    distances: FloatArray,
    identity: IndexArray,
    threshold: float,
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """95% percentile intervals for (FMR, FNMR), resampling identities with replacement.

    Pairs sharing a person are correlated (a look-alike person yields many false matches at once),
    so whole identities are the independent units. A replicate that draws identity a c_a times
    counts its impostor pairs as sum over a != b of c_a c_b pairs(a, b) and its genuine pairs as
    sum over a of c_a pairs(a, a), which a per-identity count matrix gives without re-pairing.
    """
    n_images = identity.size
    n_identities = int(identity.max()) + 1
    members = np.zeros((n_images, n_identities))
    members[np.arange(n_images), identity] = 1.0
    distinct = ~np.eye(n_images, dtype=bool)
    accepted = members.T @ ((distances <= threshold) & distinct).astype(np.float64) @ members
    pairs = members.T @ distinct.astype(np.float64) @ members
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_identities, np.full(n_identities, 1.0 / n_identities), size=replicates)
    weights = draws.astype(np.float64)

    def across(matrix: FloatArray) -> FloatArray:
        off_diagonal = matrix - np.diag(np.diag(matrix))
        result: FloatArray = ((weights @ off_diagonal) * weights).sum(axis=1)  # per replicate w' M w
        return result

    impostor_accepted, impostor_pairs = across(accepted), across(pairs)
    genuine_pairs = weights @ np.diag(pairs)
    genuine_rejected = genuine_pairs - weights @ np.diag(accepted)
    with np.errstate(invalid="ignore", divide="ignore"):
        fmr = impostor_accepted / impostor_pairs
        fnmr = genuine_rejected / genuine_pairs
    return _percentile_interval(fmr), _percentile_interval(fnmr)


def _percentile_interval(samples: FloatArray) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]  # a replicate without any pair of a kind has no rate
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def confident_threshold_at_fmr(
    distances: FloatArray, identity: IndexArray, impostor: FloatArray, target: float
) -> float:
    """The largest threshold whose by-identity bootstrap 95% upper bound on FMR stays within `target`.

    Each replicate's FMR grows with the threshold, so the upper bound does too: bisect over the
    number of impostor pairs let through, from none up to what the point estimate allows.
    """
    ordered = np.sort(impostor)

    def letting_through(errors: int) -> float:
        return float(np.nextafter(ordered[errors], -np.inf))

    def within(errors: int) -> bool:
        (_, high), _ = bootstrap_rates(distances, identity, letting_through(errors))
        return high <= target

    low, high = 0, min(math.floor(target * ordered.size), ordered.size - 1)
    if within(high):
        return letting_through(high)
    while high - low > 1:  # invariant: within(low) (no impostor let through), not within(high)
        middle = (low + high) // 2
        low, high = (middle, high) if within(middle) else (low, middle)
    return letting_through(low)


@dataclass(frozen=True)
class ErrorRate:
    observed: Proportion  # with the Wilson interval
    bootstrap_low: float  # by-identity bootstrap 95% interval
    bootstrap_high: float
    rule_of_three: float | None  # 95% upper bound when no error was seen


@dataclass(frozen=True)
class ThresholdResult:
    role: str
    threshold: float
    fmr: ErrorRate
    fnmr: ErrorRate


def error_rates_at(
    role: str,
    threshold: float,
    distances: FloatArray,
    identity: IndexArray,
    genuine: FloatArray,
    impostor: FloatArray,
) -> ThresholdResult:
    # Wilson treats every pair as an independent trial, but impostor pairs reuse the same images and
    # people (1.4k images make 1M pairs), so its interval is optimistic. The by-identity bootstrap
    # is the realistic interval; it collapses to [0, 0] at zero errors, where the rule of 3 counted
    # over the independent units (pairs of people for FMR, people for FNMR) bounds the rate instead.
    (fmr_low, fmr_high), (fnmr_low, fnmr_high) = bootstrap_rates(distances, identity, threshold)
    false_matches, false_non_matches = matched(impostor, threshold), not_matched(genuine, threshold)
    identities = int(identity.max()) + 1
    with_genuine_pairs = int(np.count_nonzero(np.bincount(identity) > 1))
    return ThresholdResult(
        role,
        threshold,
        ErrorRate(
            proportion(false_matches, impostor.size),
            fmr_low,
            fmr_high,
            rule_of_three(identities * (identities - 1) // 2) if false_matches == 0 else None,
        ),
        ErrorRate(
            proportion(false_non_matches, genuine.size),
            fnmr_low,
            fnmr_high,
            rule_of_three(with_genuine_pairs) if false_non_matches == 0 else None,
        ),
    )


@dataclass(frozen=True)
class Bands:
    accept: float
    review: float
    reject: float


def band_shares(distances: FloatArray, thresholds: Thresholds) -> Bands:
    if distances.size == 0:
        return Bands(0.0, 0.0, 0.0)
    accept = matched(distances, thresholds.accept_distance)
    reject = not_matched(distances, thresholds.reject_distance)
    n = distances.size
    return Bands(accept / n, (n - accept - reject) / n, reject / n)


def propose_replay_threshold(copies: FloatArray, genuine: FloatArray) -> float:
    """Where to call two submissions the same capture, to 2 decimals: the least reach that catches
    every copy, but never one that calls more than MAX_GENUINE_FLAGGED of the genuine pairs copies.

    A real person called a replay fails the check, while a replay missed here can still be caught
    by the file and frame hashes; and two selfies from one session lie closer than LFW's photos from
    different days, so the genuine bound is a floor on the harm, not its measure.
    """
    reach = math.ceil(float(copies.max()) * 100) / 100
    return min(reach, round_down(threshold_at_fmr(genuine, MAX_GENUINE_FLAGGED), 2))


# ---------------------------------------------------------------------------------------------
# Reports (plain data, built from the statistics)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LfwReport:
    identities: int
    images: int
    fta: Proportion
    fta_no_face: int
    fta_multiple_faces: int
    genuine: Distribution
    impostor: Distribution
    thresholds: tuple[ThresholdResult, ...]  # the configured ones, then per FMR target: calibrated, confident
    calibrated: dict[str, float]  # FMR target -> largest threshold meeting it on this data
    confident: dict[str, float]  # FMR target -> largest threshold whose bootstrap upper bound meets it
    genuine_bands: Bands
    impostor_bands: Bands


@dataclass(frozen=True)
class ReplayThreshold:
    role: str
    threshold: float
    copies_missed: dict[str, Proportion]  # per kind: copies farther than the threshold
    genuine_flagged: Proportion  # genuine pairs within it: a new photo called a replay


@dataclass(frozen=True)
class ReplayReport:
    copies: dict[str, Distribution]  # per REPLAY_COPIES kind: distance to the original
    copies_lost: dict[str, Proportion]  # copies in which the original's single face is no longer found alone
    genuine_min: float
    rows: tuple[ReplayThreshold, ...]  # the configured threshold, then the proposed one
    proposed: float


@dataclass(frozen=True)
class Report:
    source: str
    thresholds: Thresholds
    lfw: LfwReport
    replay: ReplayReport
    trials: tuple[Trial, ...] | None  # attacks and live clips (tools.liveness.attack_evaluation)
    still_patterns: dict[str, float]  # texture.periodic_pattern of the sfas stills' faces
    seconds: dict[str, float]


@dataclass(frozen=True)
class Encoded:
    faces: int
    embedding: Embedding | None  # only when exactly one face was found


@dataclass(frozen=True)
class ImageEncoding:
    path: str
    identity: str
    original: Encoded
    copies: dict[str, Encoded]  # per REPLAY_COPIES kind; empty when the original failed


def lfw_report(images: Sequence[ImageEncoding], thresholds: Thresholds) -> tuple[LfwReport, FloatArray]:
    """The matcher's figures over the acquired images, and the genuine distances for the replay part."""
    acquired = [image for image in images if image.original.embedding is not None]
    names = sorted({image.identity for image in acquired})
    index = {name: i for i, name in enumerate(names)}
    identity = np.array([index[image.identity] for image in acquired], dtype=np.intp)
    embeddings = np.array([image.original.embedding for image in acquired], dtype=np.float64)
    distances = distance_matrix(embeddings)
    (g1, g2), (i1, i2) = enumerate_pairs(identity)
    genuine, impostor = distances[g1, g2], distances[i1, i2]

    results = [
        error_rates_at("accept", thresholds.accept_distance, distances, identity, genuine, impostor),
        error_rates_at("reject", thresholds.reject_distance, distances, identity, genuine, impostor),
    ]
    calibrated: dict[str, float] = {}
    confident: dict[str, float] = {}
    for target in FMR_TARGETS:
        name = f"{target:.0e}"
        calibrated[name] = threshold_at_fmr(impostor, target)
        confident[name] = confident_threshold_at_fmr(distances, identity, impostor, target)
        for role, value in ((f"FMR<={name}", calibrated[name]), (f"FMR<={name} 95%", confident[name])):
            results.append(error_rates_at(role, round_down(value), distances, identity, genuine, impostor))

    failures = [image.original.faces for image in images if image.original.embedding is None]
    report = LfwReport(
        identities=len({image.identity for image in images}),
        images=len(images),
        fta=proportion(len(failures), len(images)),
        fta_no_face=sum(1 for faces in failures if faces == 0),
        fta_multiple_faces=sum(1 for faces in failures if faces > 1),
        genuine=distribution(genuine),
        impostor=distribution(impostor),
        thresholds=tuple(results),
        calibrated=calibrated,
        confident=confident,
        genuine_bands=band_shares(genuine, thresholds),
        impostor_bands=band_shares(impostor, thresholds),
    )
    return report, genuine


def copy_distances(images: Sequence[ImageEncoding], kind: str) -> tuple[FloatArray, int, int]:
    """Distances original -> copy where both have one face, with (copies lost, originals acquired)."""
    pairs = [
        (image.original.embedding, image.copies[kind].embedding)
        for image in images
        if image.original.embedding is not None
    ]
    found = [(a, b) for a, b in pairs if b is not None]
    distances = np.array([float(np.linalg.norm(a - b)) for a, b in found], dtype=np.float64)
    return distances, len(pairs) - len(found), len(pairs)


def replay_report(images: Sequence[ImageEncoding], genuine: FloatArray, thresholds: Thresholds) -> ReplayReport:
    measured = {kind: copy_distances(images, kind) for kind in REPLAY_COPIES}
    proposed = propose_replay_threshold(measured[REPLAY_BASIS][0], genuine)

    def row(role: str, threshold: float) -> ReplayThreshold:
        return ReplayThreshold(
            role,
            threshold,
            {
                kind: proportion(not_matched(distances, threshold), distances.size)
                for kind, (distances, _, _) in measured.items()
            },
            proportion(matched(genuine, threshold), genuine.size),
        )

    return ReplayReport(
        copies={kind: distribution(distances) for kind, (distances, _, _) in measured.items()},
        copies_lost={kind: proportion(lost, acquired) for kind, (_, lost, acquired) in measured.items()},
        genuine_min=float(genuine.min()),
        rows=(row("configured", thresholds.replay_distance), row("proposed", proposed)),
        proposed=proposed,
    )


def _sci(value: float) -> str:
    return "0" if value == 0 else f"{value:.2e}"


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _interval(low: float, high: float, fmt: Callable[[float], str]) -> str:
    return f"[{fmt(low)}, {fmt(high)}]"


def _proportion_text(p: Proportion, fmt: Callable[[float], str] = _pct) -> str:
    return f"{fmt(p.share)} ({p.count}/{p.total}; 95% CI {_interval(p.low, p.high, fmt)})"


def _distribution_rows(named: Iterable[tuple[str, Distribution]]) -> list[list[str]]:
    return [[name, str(d.count), *(f"{d.quantiles[q]:.3f}" for q, _ in QUANTILES)] for name, d in named]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _histogram_lines(name: str, d: Distribution, width: int = 40) -> list[str]:
    if not d.histogram:
        return [f"{name}: no values"]
    edges = histogram_edges()
    peak = max(d.histogram)
    used = [i for i, count in enumerate(d.histogram) if count]
    lines = [f"{name} (n={d.count}; each row {HISTOGRAM_BIN:.2f} wide, bar scaled to the fullest row):"]
    for i in range(used[0], used[-1] + 1):
        count = d.histogram[i]
        bar = "#" * math.ceil(width * count / peak) if count else ""
        upper = f"{edges[i + 1]:.2f}" if i + 1 < len(d.histogram) else "+   "
        lines.append(f"  {edges[i]:.2f}-{upper}  {bar:<{width}}  {count:>7}  {count / d.count:6.2%}")
    return lines


def _threshold_rows(results: Sequence[ThresholdResult]) -> list[list[str]]:
    rows = []
    for r in results:
        fmr_extra = f"; rule of 3 <= {_sci(r.fmr.rule_of_three)}" if r.fmr.rule_of_three is not None else ""
        fnmr_extra = f"; rule of 3 <= {_pct(r.fnmr.rule_of_three)}" if r.fnmr.rule_of_three is not None else ""
        rows.append(
            [
                r.role,
                f"{r.threshold:.3f}",
                f"{_sci(r.fmr.observed.share)} ({r.fmr.observed.count})",
                _interval(r.fmr.observed.low, r.fmr.observed.high, _sci),
                _interval(r.fmr.bootstrap_low, r.fmr.bootstrap_high, _sci) + fmr_extra,
                f"{_pct(r.fnmr.observed.share)} ({r.fnmr.observed.count})",
                _interval(r.fnmr.observed.low, r.fnmr.observed.high, _pct),
                _interval(r.fnmr.bootstrap_low, r.fnmr.bootstrap_high, _pct) + fnmr_extra,
            ]
        )
    return rows


THRESHOLD_HEADER = (
    "threshold",
    "distance",
    "FMR (errors)",
    "FMR Wilson 95%",
    "FMR bootstrap 95%",
    "FNMR (errors)",
    "FNMR Wilson 95%",
    "FNMR bootstrap 95%",
)
DISTRIBUTION_HEADER = ("pairs", "n", *(name for name, _ in QUANTILES))
BANDS_HEADER = ("pairs", "accept", "review", "reject")
ATTACK_HEADER = ("attack class", "variants", "APCER", "passed any draw", "95% upper", "stopped by (variants)")
LIVE_HEADER = (
    "live clip: challenge it performs",
    "outcome",
    "reasons",
    "match",
    "stillness",
    "turn depth",
    "largest jump",
)
CUE_HEADER = ("cue", "threshold", "nearest live", "nearest attack it stops", "live clips behind it")
# Liveness cues: the side a live clip lies on, and the threshold (liveness.texture).
CUES = {
    "stillness": ("above", texture.MIN_STILLNESS),
    "turn_depth": ("above", texture.MIN_TURN_DEPTH),
    "largest_jump": ("below", texture.MAX_JUMP),
    "screen_pattern": ("below", texture.MAX_PATTERN),
}


def _bands_rows(lfw: LfwReport) -> list[list[str]]:
    return [
        [name, _pct(b.accept), _pct(b.review), _pct(b.reject)]
        for name, b in (("genuine", lfw.genuine_bands), ("impostor", lfw.impostor_bands))
    ]


def _distributions(report: Report) -> list[tuple[str, Distribution]]:
    copies = [(f"copy {kind}", d) for kind, d in report.replay.copies.items()]
    return [("genuine", report.lfw.genuine), ("impostor", report.lfw.impostor), *copies]


def _replay_header() -> list[str]:
    return ["replay threshold", *(f"{kind} missed" for kind in REPLAY_COPIES), "genuine flagged"]


def _replay_rows(replay: ReplayReport) -> list[list[str]]:
    return [
        [
            f"{row.role} {row.threshold:.2f}",
            *(_pct(missed.share) for missed in row.copies_missed.values()),
            f"{_pct(row.genuine_flagged.share)} ({row.genuine_flagged.count})",
        ]
        for row in replay.rows
    ]


def render_text(report: Report) -> str:
    lfw, replay, t = report.lfw, report.replay, report.thresholds
    lines = [
        f"Face matcher evaluation on {report.source}",
        f"thresholds: accept <= {t.accept_distance}, reject > {t.reject_distance}, replay <= {t.replay_distance}",
        "",
        "== Acquisition ==",
        f"{lfw.identities} identities, {lfw.images} images",
        f"failure to acquire (not exactly one face): {_proportion_text(lfw.fta)}"
        f" - no face {lfw.fta_no_face}, several faces {lfw.fta_multiple_faces}",
        "",
        "== Distances ==",
        *_table(
            DISTRIBUTION_HEADER,
            _distribution_rows(_distributions(report)),
        ),
        "",
        *_histogram_lines("genuine", lfw.genuine),
        *_histogram_lines("impostor", lfw.impostor),
        "",
        "== Error rates (match: distance <= threshold) ==",
        "Wilson intervals treat pairs as independent, which impostor pairs sharing images are not:",
        "read the by-identity bootstrap as the realistic interval.",
        *_table(THRESHOLD_HEADER, _threshold_rows(lfw.thresholds)),
        "",
        "Calibration (rows above round these down to 3 decimals):",
        *(
            f"  FMR <= {target}: {lfw.calibrated[target]:.4f} on this data; "
            f"{lfw.confident[target]:.4f} with the bootstrap 95% upper bound within it"
            for target in lfw.calibrated
        ),
        "",
        f"Bands: accept <= {t.accept_distance} < review <= {t.reject_distance} < reject",
        *_table(BANDS_HEADER, _bands_rows(lfw)),
        "",
        "== Replay calibration ==",
        "Copies of each acquired image (rescaled bicubic, re-encoded as JPEG; distances in the table",
        "above). Copies no longer giving one face:",
        *(f"  {kind}: {_proportion_text(lost)}" for kind, lost in replay.copies_lost.items()),
        *_histogram_lines(f"copy {REPLAY_BASIS}", replay.copies[REPLAY_BASIS]),
        f"farthest {REPLAY_BASIS} copy {replay.copies[REPLAY_BASIS].quantiles['max']:.3f} "
        f"(p99 {replay.copies[REPLAY_BASIS].quantiles['p99']:.3f}); "
        f"nearest genuine pair {replay.genuine_min:.3f} (p1 {lfw.genuine.quantiles['p1']:.3f})",
        f"proposed: the least reach catching every {REPLAY_BASIS} copy, capped where it would flag more than",
        f"{MAX_GENUINE_FLAGGED:.1%} of genuine pairs (copies missed: farther than the threshold; genuine flagged: within it)",
        *_table(_replay_header(), _replay_rows(replay)),
    ]
    if report.trials is not None:
        lines += ["", "== Liveness: attacks and live clips ==", *_trial_text(report.trials, markdown=False)]
        lines += [_patterns_line(report.still_patterns)]
    lines += ["", "wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())]
    return "\n".join(lines)


def _trial_text(trials: Sequence[Trial], markdown: bool) -> list[str]:
    table = _markdown_table if markdown else _table
    rates = class_rates(trials)
    turned_away, live = bpcer(trials)
    live_rows = [
        [
            t.source,
            t.outcome,
            ", ".join(t.reasons) or "-",
            *(
                f"{t.scores[k]:.3f}" if k in t.scores else "-"
                for k in ("match_distance", "stillness", "turn_depth", "largest_jump")
            ),
        ]
        for t in sorted((t for t in trials if t.kind == "bona_fide"), key=lambda t: t.source)
    ]
    attack_rows = [
        [
            rate.kind,
            str(rate.variants),
            _pct(rate.apcer),
            str(rate.passed_any),
            _pct(rate.upper_95),
            ", ".join(f"{reason} ({count})" for reason, count in list(rate.reasons.items())[:4]),
        ]
        for rate in rates
    ]
    cue_rows = [
        [name, f"{threshold:.3f}", f"{live_value:.3f}", f"{attack_value:.3f}", str(count)]
        for name, threshold, live_value, attack_value, count in cue_margins(trials, CUES)
    ]
    upper = rule_of_three(live) if turned_away == 0 else wilson_interval(turned_away, live)[1]
    return [
        *table(ATTACK_HEADER, attack_rows),
        "",
        *table(LIVE_HEADER, live_rows),
        "",
        f"BPCER (live attempts turned away, each under a challenge it performs): {turned_away}/{live}"
        f" = {_pct(turned_away / live if live else 0.0)}; 95% upper bound {_pct(upper)}: {live} live attempts"
        " from two recordings cannot support a rate of 5% or less, only show that these pass.",
        "",
        *table(CUE_HEADER, cue_rows),
        "",
        "The thresholds rest on the live clips named above (two people, two recordings): each lies between",
        "the nearest live value and the attacks it stops, nearer the attacks, and none is supported by",
        "enough live recordings to state its false rejection rate.",
    ]


def _patterns_line(patterns: dict[str, float]) -> str:
    found = ", ".join(f"{name} {value:.1f}" for name, value in patterns.items())
    return f"screen/print pattern (threshold {texture.MAX_PATTERN:g}) on the sfas stills: {found or 'none found'}"


def render_markdown(report: Report) -> str:
    lfw, replay = report.lfw, report.replay
    lines = [
        f"Face matcher on `{report.source}`: {lfw.identities} identities, {lfw.images} images, "
        f"failure to acquire {_proportion_text(lfw.fta)}; "
        f"{lfw.genuine.count} genuine and {lfw.impostor.count} impostor pairs.",
        "",
        *_markdown_table(
            DISTRIBUTION_HEADER,
            _distribution_rows(_distributions(report)),
        ),
        "",
        *_markdown_table(THRESHOLD_HEADER, _threshold_rows(lfw.thresholds)),
        "",
        *_markdown_table(BANDS_HEADER, _bands_rows(lfw)),
        "",
        *_markdown_table(_replay_header(), _replay_rows(replay)),
    ]
    if report.trials is not None:
        lines += ["", *_trial_text(report.trials, markdown=True), "", _patterns_line(report.still_patterns)]
    return "\n".join(lines)


def report_json(report: Report) -> str:
    def default(value: object) -> object:
        if isinstance(value, np.ndarray):
            return value.tolist()
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    return json.dumps(dataclasses.asdict(report), indent=2, default=default)


# ---------------------------------------------------------------------------------------------
# Shell: files, encoding, the pipeline, the command line
# ---------------------------------------------------------------------------------------------


def encode_rgb(pixels: Image_) -> Encoded:
    """The worker's still encoder (`liveness.faces`), with the number of faces it found."""
    # Imported here so the statistics above import without dlib: face_recognition quits the
    # process when its models are missing.
    from liveness import faces

    found = faces.detect_still(pixels)
    if len(found) != 1:
        return Encoded(len(found), None)
    return Encoded(1, faces.encode_box(pixels, found[0]))


def replay_copy(image: Image.Image, scale: float, quality: int | None) -> Image.Image:
    """What a re-upload of the same photo looks like: rescaled, then re-compressed."""
    width, height = image.size
    copy = image.resize((round(width * scale), round(height * scale)), Image.Resampling.BICUBIC)
    if quality is None:
        return copy
    buffer = io.BytesIO()
    copy.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def encode_file(task: tuple[str, str]) -> ImageEncoding:
    path, identity = task
    pixels = decode_still(Path(path).read_bytes())  # as the worker reads a photo: upright, analysis size
    original = encode_rgb(pixels)
    if original.embedding is None:
        return ImageEncoding(path, identity, original, {})
    image = Image.fromarray(pixels)
    copies = {
        kind: encode_rgb(np.asarray(replay_copy(image, scale, quality)))
        for kind, (scale, quality) in REPLAY_COPIES.items()
    }
    return ImageEncoding(path, identity, original, copies)


def list_identity_images(root: Path, limit: int | None) -> list[tuple[str, str]]:
    people = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("*.jpg")))
    return [(str(photo), person.name) for person in people[:limit] for photo in sorted(person.glob("*.jpg"))]


def _encoder() -> str:
    """Part of every cache key: the worker's still encoder and the copies made of each photo."""
    from liveness import faces  # see encode_rgb

    return faces.STILL_ENCODER + "/" + ",".join(f"{s}x-q{q}" for s, q in REPLAY_COPIES.values())


def _cache_key(path: str, encoder: str) -> str:
    stat = os.stat(path)
    return f"{encoder}|{os.path.abspath(path)}|{stat.st_mtime_ns}|{stat.st_size}"


def _to_cache(image: ImageEncoding) -> dict[str, Any]:
    def encoded(e: Encoded) -> dict[str, Any]:
        return {"faces": e.faces, "embedding": None if e.embedding is None else e.embedding.tolist()}

    return {"original": encoded(image.original), "copies": {k: encoded(e) for k, e in image.copies.items()}}


def _from_cache(path: str, identity: str, entry: dict[str, Any]) -> ImageEncoding:
    def encoded(e: dict[str, Any]) -> Encoded:
        vector = e["embedding"]
        return Encoded(int(e["faces"]), None if vector is None else np.array(vector, dtype=np.float64))

    copies = {kind: encoded(e) for kind, e in entry["copies"].items()}
    return ImageEncoding(path, identity, encoded(entry["original"]), copies)


def encode_all(tasks: Sequence[tuple[str, str]], cache_path: Path, workers: int) -> list[ImageEncoding]:
    cache: dict[str, Any] = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    encoder = _encoder()
    keys = {path: _cache_key(path, encoder) for path, _ in tasks}
    missing = [task for task in tasks if keys[task[0]] not in cache]
    if missing:
        # dlib detects and encodes on one thread per call: one process per core uses the machine.
        with multiprocessing.Pool(workers) as pool:
            for image in pool.imap_unordered(encode_file, missing, chunksize=8):
                cache[keys[image.path]] = _to_cache(image)
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_path.with_suffix(".tmp")  # replaced whole, so an interrupted run leaves the old cache
        partial.write_text(json.dumps(cache))
        partial.replace(cache_path)
    return [_from_cache(path, identity, cache[keys[path]]) for path, identity in tasks]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.liveness.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "dir", type=Path, help="identities as DIR/<Person>/*.jpg or DIR/lfw-dev/...; videos in DIR/video"
    )
    parser.add_argument("--accept", type=float, help=f"accept distance (default {Thresholds.accept_distance})")
    parser.add_argument("--reject", type=float, help=f"reject distance (default {Thresholds.reject_distance})")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables for the README")
    parser.add_argument("--limit-identities", type=int, help="only the first N identities, for a quick run")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="encodings cache (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="processes encoding and analysing (default %(default)s)")
    parser.add_argument(
        "--no-video", action="store_true", help="skip the videos and attacks even when DIR/video exists"
    )
    parser.add_argument("--variants", type=int, default=20, help="variants of each attack class (default %(default)s)")
    parser.add_argument("--attack", action="append", choices=attacks.KINDS, help="only these attack classes")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    thresholds = Thresholds()
    if args.accept is not None:
        thresholds = dataclasses.replace(thresholds, accept_distance=args.accept)
    if args.reject is not None:
        thresholds = dataclasses.replace(thresholds, reject_distance=args.reject)
    root: Path = args.dir
    identities = root / "lfw-dev" if (root / "lfw-dev").is_dir() else root

    started = time.monotonic()
    images = encode_all(list_identity_images(identities, args.limit_identities), args.cache, args.workers)
    encoded = time.monotonic()
    lfw, genuine = lfw_report(images, thresholds)
    replay = replay_report(images, genuine, thresholds)
    measured = time.monotonic()
    trials = None
    patterns: dict[str, float] = {}
    if (root / "video").is_dir() and not args.no_video:
        trials = tuple(evaluate(root, thresholds, args.variants, args.workers, args.attack or attacks.KINDS))
        patterns = still_patterns(root)
    finished = time.monotonic()

    seconds = {"encoding": encoded - started, "statistics": measured - encoded}
    if trials is not None:
        seconds["liveness"] = finished - measured
    seconds["total"] = finished - started
    report = Report(str(identities), thresholds, lfw, replay, trials, patterns, seconds)
    print(render_text(report))
    if args.markdown:
        print("\n" + render_markdown(report))
    if args.json is not None:
        args.json.write_text(report_json(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
