"""Fits of the paper's computing model (Sec. 3.4) to measured (steps, TV, latency) points.

eq. (7): TV(s) = A2 for s <= A1; linear from (A1, A2) to (A3, A4) for A1 < s < A3; A4 for s >= A3.
eq. (8): D_gt(s) = B1 * s + B2.
Both breakpoints of eq. (7) are searched on a grid; for each (A1, A3) pair the levels (A2, A4)
enter linearly, so they are solved exactly by least squares and the best pair wins. Eq. (7)
itself is the system model's (``testbed.core.system_model.edge_quality`` and its
``quality_progress``). "TV" stands for whichever quality measure is fitted.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from testbed.core.system_model import edge_quality, quality_progress

BREAKPOINT_GRID_POINTS = 161
SUBDIVISIONS = 8
"""Extra breakpoint candidates between consecutive measured step counts (finer where dense)."""


@dataclass(frozen=True)
class QualityFit:
    """eq. (7) parameters: A1 < A3 in steps, A2 (TV at few steps) and A4 (TV at many)."""

    a1: float
    a2: float
    a3: float
    a4: float
    r2: float

    def predict(self, steps: np.ndarray | float) -> np.ndarray:
        return edge_quality(np.asarray(steps, dtype=float), self.a1, self.a2, self.a3, self.a4)


@dataclass(frozen=True)
class LatencyFit:
    """eq. (8) parameters: B1 in s per step, B2 in s; `b2_clamped` if B2 was forced to 0."""

    b1: float
    b2: float
    r2: float
    b2_clamped: bool

    def predict(self, steps: np.ndarray | float) -> np.ndarray:
        return self.b1 * np.asarray(steps, dtype=float) + self.b2


def r_squared(observed: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination; 1.0 for a perfect fit of constant data."""
    ss_res = float(np.sum((observed - predicted) ** 2))
    ss_tot = float(np.sum((observed - observed.mean()) ** 2))
    if ss_tot == 0.0:
        return 1.0 if ss_res == 0.0 else 0.0
    return 1.0 - ss_res / ss_tot


def fit_quality(
    steps: np.ndarray, tv: np.ndarray, grid_points: int = BREAKPOINT_GRID_POINTS
) -> QualityFit:
    """Least-squares fit of eq. (7), searching A1 and A3 over a grid of candidate steps.

    Candidates: an even grid from 0 to the largest step, plus the measured step counts and
    `SUBDIVISIONS` points between each consecutive pair of them (small models change within a
    few steps, where grids are dense). A1 >= 0 and A1 < A3 by construction.
    """
    steps = np.asarray(steps, dtype=float)
    tv = np.asarray(tv, dtype=float)
    if steps.shape != tv.shape or steps.size < 3:
        raise ValueError("need at least 3 (steps, tv) points of equal shape")
    measured = np.unique(steps)
    between = [
        np.linspace(low, high, SUBDIVISIONS + 1) for low, high in itertools.pairwise(measured)
    ]
    even = np.linspace(0.0, steps.max(), grid_points)
    candidates = np.unique(np.concatenate([even, measured, *between]))
    candidates = candidates[candidates >= 0.0]
    best: tuple[float, float, float, float, float] | None = None
    for i, a1 in enumerate(candidates[:-1]):
        a3 = candidates[i + 1 :, None]  # every A3 > A1 at once: shape (K, 1)
        weight = quality_progress(steps[None, :], a1, a3)  # eq. (7), shape (K, N)
        # TV = A2 (1 - w) + A4 w: 2x2 normal equations per candidate A3
        u, w = 1.0 - weight, weight
        suu, suw, sww = (u * u).sum(1), (u * w).sum(1), (w * w).sum(1)
        suy, swy = (u * tv).sum(1), (w * tv).sum(1)
        det = suu * sww - suw**2
        solvable = np.abs(det) > 1e-12
        safe_det = np.where(solvable, det, 1.0)
        a2 = np.where(solvable, (sww * suy - suw * swy) / safe_det, tv.mean())
        a4 = np.where(solvable, (suu * swy - suw * suy) / safe_det, tv.mean())
        sse = ((a2[:, None] * u + a4[:, None] * w - tv[None, :]) ** 2).sum(1)
        k = int(np.argmin(sse))
        if best is None or sse[k] < best[0] - 1e-12:
            best = (float(sse[k]), float(a1), float(a2[k]), float(a3[k, 0]), float(a4[k]))
    assert best is not None
    _, a1, a2, a3, a4 = best
    r2 = r_squared(tv, edge_quality(steps, a1, a2, a3, a4))
    return QualityFit(a1=a1, a2=a2, a3=a3, a4=a4, r2=r2)


def fit_latency(steps: np.ndarray, latency_s: np.ndarray) -> LatencyFit:
    """Least-squares fit of eq. (8); if B2 < 0, refit through the origin with B2 = 0."""
    steps = np.asarray(steps, dtype=float)
    latency_s = np.asarray(latency_s, dtype=float)
    if steps.shape != latency_s.shape or np.unique(steps).size < 2:
        raise ValueError("need latencies at two or more distinct step counts")
    b1, b2 = np.polyfit(steps, latency_s, deg=1)
    clamped = bool(b2 < 0.0)
    if clamped:
        b1, b2 = float(steps @ latency_s / (steps @ steps)), 0.0
    if b1 <= 0.0:
        raise ValueError(f"latency does not grow with steps (B1 = {b1:.3g} s/step)")
    r2 = r_squared(latency_s, b1 * steps + b2)
    return LatencyFit(b1=float(b1), b2=float(b2), r2=r2, b2_clamped=clamped)
