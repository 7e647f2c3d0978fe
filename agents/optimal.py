"""The exact optimiser: the yardstick every agent is measured against.

Per slot, :class:`OptimalAllocation` minimises sum_u G_u (eqs. (10), (12)) subject to
(11b)-(11g) for a given cache. With the cache fixed, the objective separates into

* a bandwidth part, sum_u alpha d_in_u / R_up_u(b_u) with sum_u b_u <= 1 (eqs. (2), (4)):
  convex and separable, solved from its KKT conditions (equal marginals). It involves
  every user (cloud users upload too) and does not depend on the cache;
* a steps part over the users served at the edge, sum_u alpha B1 s_u + (1 - alpha) TV_u(s_u)
  with s_u = xi_u L and sum_u s_u <= L (eqs. (7), (8)): a separable, piecewise-linear,
  non-convex knapsack. Each term rises on [0, A1], is linear on [A1, A3] and rises after
  A3, so only s_u = 0 or s_u in [A1, A3] can be optimal.

Everything else in G_u (downlink, backhaul, B2, the cloud's fixed terms) is a constant
of the slot and the cache. (11h) is not imposed; the violations that remain are reported.

Per frame, :class:`OptimalCaching` enumerates every cache that satisfies (11d) and keeps
the one with the lowest mean optimal-allocation utility over a fixed set of sample slots
of the frame's popularity state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from testbed.core.config import ModelCatalogue, ScenarioConfig
from testbed.core.records import FrameState, SlotState
from testbed.core.seeding import optimal_samples_seed
from testbed.core.system_model import (
    RadioParams,
    amend_bandwidth,
    feasible_caches,
    quality_progress,
    score_slot,
)

SlotSampler = Callable[[ScenarioConfig, int, int, np.random.SeedSequence], list[SlotState]]
"""(config, popularity index, count, seed) -> independent slots of the world at that state
(``ue_emulator.world.sample_slots``)."""

_LN2 = np.log(2.0)
_NEWTON_TOL = 1e-13
_NEWTON_MAX_ITER = 100
MAX_ENUMERATED_MODELS = 20
"""Largest M whose 2^M caches :class:`OptimalCaching` enumerates."""
_MAX_ENUMERATED = 12
"""Gaining edge users up to which the steps part enumerates every set (2^n x n numbers)."""


def _log_marginal_shape(snr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log phi(y) and d log phi / d log y for phi(y) = y^2 (ln(1+y) - y/(1+y)) / ln(1+y)^2.

    -d/db [d_in / R_up(b)] = K phi(c / b) with c = p h / (N0 W) and K = d_in ln2 / (W c^2),
    from eq. (2); phi is increasing, with log-slope close to 2 everywhere.
    """
    log1p = np.log1p(snr)
    excess = log1p - snr / (1.0 + snr)
    log_phi = 2.0 * np.log(snr) + np.log(excess) - 2.0 * np.log(log1p)
    slope = 2.0 + snr * snr / ((1.0 + snr) ** 2 * excess) - 2.0 * snr / ((1.0 + snr) * log1p)
    return log_phi, slope


def optimal_bandwidth(
    radio: RadioParams, gain: np.ndarray, input_bits: np.ndarray
) -> tuple[np.ndarray, float]:
    """Minimise sum_u alpha d_in_u / R_up_u(b_u) s.t. sum_u b_u <= 1 (eqs. (2), (4), (11e)).

    The objective is convex and decreasing in each b_u, with an infinite marginal at 0, so
    the optimum has every b_u > 0, sum_u b_u = 1 and equal marginals -d/db_u = mu (KKT).
    Writing each user's marginal as K_u phi(y_u), y_u = c_u / b_u, the system is solved by
    a joint Newton iteration on (log y_u, log mu), vectorised over users, to 1e-13.

    Returns the shares and the common marginal mu (utility per unit of bandwidth share);
    with alpha = 0 the bandwidth does not matter and the even split (mu = 0) is returned.
    """
    gain = np.asarray(gain, dtype=float)
    if radio.alpha == 0.0:
        return amend_bandwidth(np.ones_like(gain)), 0.0
    input_bits = np.asarray(input_bits, dtype=float)
    snr_coef = radio.user_tx_power_w * gain / (radio.noise_psd_w_per_hz * radio.uplink_bandwidth_hz)
    log_k = np.log(radio.alpha * input_bits * _LN2 / radio.uplink_bandwidth_hz) - 2 * np.log(
        snr_coef
    )
    # phi(y) ~ y^2 gives sum_u c_u sqrt(K_u / mu) = 1 as the starting point.
    log_mu = 2.0 * np.log(np.sum(snr_coef * np.exp(0.5 * log_k)))
    log_snr = 0.5 * (log_mu - log_k)
    for _ in range(_NEWTON_MAX_ITER):
        log_phi, slope = _log_marginal_shape(np.exp(log_snr))
        residual = log_phi - (log_mu - log_k)
        log_snr = log_snr - residual / slope
        share = snr_coef * np.exp(-log_snr)
        total = share.sum()
        # d log(sum b) / d log mu = -(sum_u b_u / slope_u) / sum b.
        step = np.log(total) / (np.sum(share / slope) / total)
        log_mu += step
        log_snr = log_snr + step / slope
        if np.abs(residual).max() < _NEWTON_TOL and abs(step) < _NEWTON_TOL:
            break
    share = snr_coef * np.exp(-log_snr)
    return share / share.sum(), float(np.exp(log_mu))


@dataclass(frozen=True)
class StepCurves:
    """Eqs. (7)-(8) of the users served at the edge, as costs relative to s = 0 steps.

    delta_u(s) = alpha B1 s + (1 - alpha) (TV_u(s) - A2): zero at s = 0, rising to
    alpha B1 A1 at A1, linear with ``slope`` on [A1, A3] down to ``best`` at A3, rising
    again after A3. Only users with ``best`` < 0 ever gain from denoising steps.
    """

    a1_steps: np.ndarray
    a3_steps: np.ndarray
    rise_per_step: np.ndarray
    tv_gain: np.ndarray

    @classmethod
    def build(cls, catalogue: ModelCatalogue, services: np.ndarray, alpha: float) -> StepCurves:
        return cls(
            a1_steps=catalogue.a1_steps[services],
            a3_steps=catalogue.a3_steps[services],
            rise_per_step=alpha * catalogue.b1_s_per_step[services],  # eq. (8)
            tv_gain=(1.0 - alpha)
            * (catalogue.a2_quality[services] - catalogue.a4_quality[services]),
        )

    @property
    def slope(self) -> np.ndarray:
        return self.rise_per_step - self.tv_gain / (self.a3_steps - self.a1_steps)

    @property
    def best(self) -> np.ndarray:
        return self.rise_per_step * self.a3_steps - self.tv_gain

    def cost(self, steps: np.ndarray) -> np.ndarray:
        """delta_u(s) for real s >= 0, broadcasting over a leading batch axis."""
        progress = quality_progress(steps, self.a1_steps, self.a3_steps)  # eq. (7)
        return self.rise_per_step * steps - self.tv_gain * progress  # eqs. (7), (8)

    def subset(self, users: np.ndarray) -> StepCurves:
        return StepCurves(
            self.a1_steps[users],
            self.a3_steps[users],
            self.rise_per_step[users],
            self.tv_gain[users],
        )


@dataclass(frozen=True)
class _Candidates:
    """Integer step counts of one user in the knapsack: 0 (cost 0), the window
    [lo, hi] with cost intercept + slope k, and the single count ``single`` at ``single_cost``."""

    lo: int
    hi: int
    intercept: float
    slope: float
    single: int
    single_cost: float

    def options(self, budget: int) -> tuple[np.ndarray, np.ndarray]:
        """Every nonzero count <= budget and its cost."""
        window = np.arange(self.lo, min(self.hi, budget) + 1)
        counts = np.append(window, self.single) if self.single <= budget else window
        costs = self.intercept + self.slope * counts.astype(float)
        if self.single <= budget:
            costs[-1] = self.single_cost
        return counts, costs


def _upper_candidates(curves: StepCurves, u: int) -> _Candidates:
    """Integer counts with their true costs: a feasible (upper-bound) knapsack."""
    a1, a3 = curves.a1_steps[u], curves.a3_steps[u]
    slope = float(curves.slope[u])
    top = int(np.ceil(a3))
    return _Candidates(
        lo=int(np.ceil(a1)),
        hi=int(np.floor(a3)),
        intercept=float(curves.rise_per_step[u] * a1 - slope * a1),
        slope=slope,
        single=top,
        single_cost=float(curves.rise_per_step[u] * top - curves.tv_gain[u]),
    )


def _lower_candidates(curves: StepCurves, u: int) -> _Candidates:
    """Count k stands for every real s in [k, k+1), at the infimum of delta_u there.

    Any real allocation maps to the integers floor(s_u), which still fit the budget, so
    this knapsack's optimum is a lower bound of the real one (counts with a nonnegative
    cost are dominated by 0 and may be over-estimated freely).
    """
    a1, a3 = curves.a1_steps[u], curves.a3_steps[u]
    slope = float(curves.slope[u])
    intercept = float(curves.rise_per_step[u] * a1 - slope * a1)
    return _Candidates(
        lo=int(np.floor(a1)),
        hi=int(np.floor(a3)) - 1,
        intercept=intercept + slope,  # the line at k + 1
        slope=slope,
        single=int(np.floor(a3)),
        single_cost=float(curves.best[u]),
    )


def _trailing_min(values: np.ndarray, width: int) -> np.ndarray:
    """out[t] = min(values[max(0, t - width + 1) : t + 1]), by doubling (O(n log width))."""
    out, span = values.copy(), 1
    while 2 * span <= width:
        out[span:] = np.minimum(out[span:], out[:-span].copy())
        span *= 2
    rest = width - span  # cover the window with two overlapping power-of-two spans
    if 0 < rest < len(out):
        out[rest:] = np.minimum(out[rest:], out[:-rest].copy())
    return out


def _knapsack_step(prev: np.ndarray, cand: _Candidates) -> np.ndarray:
    """Min-plus update: best cost with at most j steps once this user is added."""
    size = len(prev)
    new = prev.copy()
    if cand.lo <= cand.hi and cand.lo < size:
        # min_k prev[j-k] + c + s k = c + s j + min_{i in [j-hi, j-lo]} (prev[i] - s i)
        budget = np.arange(size, dtype=float)
        window_min = _trailing_min(prev - cand.slope * budget, cand.hi - cand.lo + 1)
        tail = window_min[: size - cand.lo] + cand.intercept + cand.slope * budget[cand.lo :]
        new[cand.lo :] = np.minimum(new[cand.lo :], tail)
    if cand.single < size:
        new[cand.single :] = np.minimum(
            new[cand.single :], prev[: size - cand.single] + cand.single_cost
        )
    return new


def _knapsack(candidates: list[_Candidates], budget: int) -> tuple[np.ndarray, float]:
    """Exact integer min-plus DP with backtracking: the counts and their total cost."""
    tables = [np.zeros(budget + 1)]
    for cand in candidates:
        tables.append(_knapsack_step(tables[-1], cand))
    counts = np.zeros(len(candidates), dtype=int)
    left = budget
    for u in range(len(candidates) - 1, -1, -1):
        prev = tables[u]
        options, costs = candidates[u].options(left)
        totals = prev[left - options] + costs
        if len(totals) and totals.min() < prev[left]:
            counts[u] = options[np.argmin(totals)]
            left -= counts[u]
    return counts, float(tables[-1][budget])


def best_integer_steps(curves: StepCurves, total_steps: int) -> tuple[np.ndarray, float]:
    """The exact optimum over integer step counts s_u in {0} U [ceil A1, ceil A3]."""
    budget = int(min(total_steps, np.ceil(curves.a3_steps).sum()))
    return _knapsack([_upper_candidates(curves, u) for u in range(len(curves.a1_steps))], budget)


def steps_lower_bound(curves: StepCurves, total_steps: int) -> float:
    """A lower bound of the real optimum: the integer DP over floor(s_u) at infimum costs."""
    budget = int(min(total_steps, np.floor(curves.a3_steps).sum()))
    return _knapsack([_lower_candidates(curves, u) for u in range(len(curves.a1_steps))], budget)[1]


def _fill_linear(curves: StepCurves, active: np.ndarray, total_steps: float) -> np.ndarray:
    """Real steps for a chosen set: A1 each, then the steepest linear pieces up to A3."""
    steps = np.where(active, curves.a1_steps, 0.0)
    spare = total_steps - steps.sum()
    order = np.flatnonzero(active)[np.argsort(curves.slope[active], kind="stable")]
    room = curves.a3_steps[order] - curves.a1_steps[order]
    before = np.cumsum(room) - room
    steps[order] += np.clip(spare - before, 0.0, room)
    return steps


@dataclass(frozen=True)
class StepsSolution:
    """The steps part of one slot: real step counts, their cost sum_u delta_u, and a
    lower bound on the real optimum (equal to ``cost`` when proven optimal)."""

    steps: np.ndarray
    cost: float
    lower_bound: float


def _best_subset(curves: StepCurves, total_steps: float) -> np.ndarray:
    """Exact real optimum by enumerating every set of users given steps (A1 each, then the
    linear pieces filled in order of steepest descent: the exact LP of that set)."""
    count = len(curves.a1_steps)
    order = np.argsort(curves.slope, kind="stable")
    masks = ((np.arange(2**count)[:, None] >> np.arange(count)) & 1).astype(bool)
    a1, room = curves.a1_steps[order], (curves.a3_steps - curves.a1_steps)[order]
    spare = total_steps - masks @ a1
    room_in = masks * room
    fill = np.clip(spare[:, None] - (np.cumsum(room_in, axis=1) - room_in), 0.0, room_in)
    cost = masks @ (curves.rise_per_step * curves.a1_steps)[order] + fill @ curves.slope[order]
    best = np.argmin(np.where(spare >= 0.0, cost, np.inf))
    steps = np.empty(count)
    steps[order] = masks[best] * a1 + fill[best]
    return steps


def optimal_steps(curves: StepCurves, total_steps: int) -> StepsSolution:
    """Minimise sum_u delta_u(s_u) s.t. s_u >= 0, sum_u s_u <= L ((11c), (11f), eqs. (7)-(8)).

    Users with ``best`` >= 0 get 0 (their delta never drops below 0). Among the others
    ("gaining" users), an optimum gives each user 0 or s in [A1, A3], and for a fixed set of
    users given steps the rest is a fractional knapsack (A1 each, then the linear pieces by
    steepest descent up to A3). So:

    * if the gaining users' A3 fit into L, each gets A3: exact;
    * else, with at most ``_MAX_ENUMERATED`` gaining users, every set is tried: exact;
    * else the integer problem (s_u in {0} U [ceil A1, ceil A3]) is solved exactly by DP and
      its chosen users are re-balanced over the reals as above, which can only lower the
      cost; a second DP over floor(s_u) bounds the real optimum from below.
    """
    steps = np.zeros(len(curves.a1_steps))
    gaining = np.flatnonzero(curves.best < 0.0)
    sub = curves.subset(gaining)
    if sub.a3_steps.sum() <= total_steps:
        steps[gaining] = sub.a3_steps
    elif len(gaining) <= _MAX_ENUMERATED:
        steps[gaining] = _best_subset(sub, float(total_steps))
    else:
        return _dp_steps(curves, gaining, total_steps)
    cost = float(curves.cost(steps).sum())
    return StepsSolution(steps, cost, cost)


def _dp_steps(curves: StepCurves, gaining: np.ndarray, total_steps: int) -> StepsSolution:
    """Integer-exact DP, real re-balance and a lower bound (see :func:`optimal_steps`)."""
    sub = curves.subset(gaining)
    counts, _ = best_integer_steps(sub, total_steps)
    steps = np.zeros(len(curves.a1_steps))
    steps[gaining] = _fill_linear(sub, counts > 0, float(total_steps))
    return StepsSolution(
        steps, float(curves.cost(steps).sum()), steps_lower_bound(sub, total_steps)
    )


@dataclass(frozen=True)
class AllocationSolution:
    """The optimiser's answer for one slot and cache."""

    b: np.ndarray
    """Bandwidth shares, summing to 1 ((11b), (11e))."""
    xi: np.ndarray
    """Step shares; zero off the edge ((11c), (11f), (11g))."""
    objective: float
    """sum_u G_u (eq. (10)) of (b, xi), as :func:`evaluate_slot` scores it."""
    violations: np.ndarray
    """Per user: D_tl > tau, i.e. (11h) broken (not imposed, only reported)."""
    steps_gap: float
    """Objective minus a lower bound on the true optimum; 0 when proven optimal."""


class OptimalAllocation:
    """Exact minimiser of sum_u G_u over (11b)-(11g) for the given cache.

    How exact: the bandwidth part is solved to machine precision (KKT, Newton to 1e-13).
    The steps part is exact (to rounding) whenever the gaining edge users' A3 fit into L or
    at most ``_MAX_ENUMERATED`` (12) edge users gain from steps: always in the default
    scenario, where 3 of the 10 models gain and we saw at most 11 such users at U = 18.
    Beyond that it is the exact optimum over integer step counts, re-balanced over the
    reals, and ``steps_gap`` bounds its distance to the real optimum. The objective is the
    uncapped sum_u G_u; :func:`evaluate_slot` caps the uplink delay at ``delay_cap_s``,
    which the optimum never reaches (its uplink delays are seconds: every user gets a
    positive share). The penalty chi of eq. (23) is not part of the
    objective, so this is the optimum of (12) without (11h), not of the reward.
    """

    name = "optimal"

    def __init__(self, config: ScenarioConfig, catalogue: ModelCatalogue) -> None:
        self.catalogue = catalogue
        self.radio = RadioParams.from_config(config)

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed  # deterministic

    def bandwidth(self, slot: SlotState) -> np.ndarray:
        """The bandwidth part's optimum: independent of the cache."""
        return optimal_bandwidth(self.radio, slot.channel_gain, slot.input_bits)[0]

    def steps(self, slot: SlotState, cache: np.ndarray) -> tuple[np.ndarray, float]:
        """The steps part's optimum as step shares xi, and its gap to the real optimum."""
        served = np.asarray(cache, dtype=bool)[slot.services]
        edge = np.flatnonzero(served)
        curves = StepCurves.build(self.catalogue, slot.services[edge], self.radio.alpha)
        solution = optimal_steps(curves, self.radio.total_steps)
        xi = np.zeros(len(served))
        xi[edge] = solution.steps / self.radio.total_steps
        return xi, solution.cost - solution.lower_bound

    def solve(
        self, slot: SlotState, cache: np.ndarray, bandwidth: np.ndarray | None = None
    ) -> AllocationSolution:
        """Both parts; pass ``bandwidth`` from :meth:`bandwidth` to reuse it across caches."""
        b = self.bandwidth(slot) if bandwidth is None else bandwidth
        xi, gap = self.steps(slot, cache)
        outcome = score_slot(self.radio, self.catalogue, slot, cache, b, xi)
        return AllocationSolution(
            b=b,
            xi=xi,
            objective=float(outcome.utility.sum()),
            violations=outcome.violation,
            steps_gap=max(gap, 0.0),
        )

    def allocate(self, slot: SlotState, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        solution = self.solve(slot, cache)
        return solution.b, solution.xi


class OptimalCaching:
    """Per frame, the best cache (11d) for the frame's popularity state.

    Exact over cache configurations with respect to the sampled expectation: every cache
    that fits C is scored by the mean over ``samples`` slots (drawn once per popularity
    state from the run seed, apart from the evaluated episodes) of the per-user utility
    sum_u G_u / U under :class:`OptimalAllocation`, and the lowest wins (ties: the lowest
    action code). The bandwidth part is solved once per sample slot; the steps part once
    per distinct set of users that a cache serves at the edge in that slot. Results are
    memoised per state.
    """

    name = "optimal"

    def __init__(
        self,
        config: ScenarioConfig,
        catalogue: ModelCatalogue,
        sample_slots: SlotSampler,
        samples: int = 32,
    ) -> None:
        self.config = config
        self.sample_slots = sample_slots
        self.samples = samples
        if config.catalogue.num_models > MAX_ENUMERATED_MODELS:
            raise ValueError(
                f"catalogue.num_models = {config.catalogue.num_models}: the exact cache "
                f"optimiser enumerates the 2^M caches and allows M <= {MAX_ENUMERATED_MODELS}"
            )
        self.allocator = OptimalAllocation(config, catalogue)
        self.caches = feasible_caches(catalogue.size_gb, config.catalogue.cache_capacity_gb)
        self._scores: dict[int, np.ndarray] = {}

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed  # the sample slots follow the run seed only: one fixed yardstick per run

    def scores(self, popularity_index: int) -> np.ndarray:
        """Mean per-user utility of every cache in :attr:`caches` at this popularity state."""
        if popularity_index not in self._scores:
            self._scores[popularity_index] = self._score_all(popularity_index)
        return self._scores[popularity_index]

    def score(self, cache: np.ndarray, popularity_index: int) -> float:
        """The score of one feasible cache."""
        row = np.flatnonzero((self.caches == np.asarray(cache, dtype=bool)).all(axis=1))
        if not len(row):
            raise ValueError("cache breaks (11d): not among the feasible configurations")
        return float(self.scores(popularity_index)[row[0]])

    def select_cache(self, frame: FrameState) -> np.ndarray:
        return self.caches[int(np.argmin(self.scores(frame.popularity_index)))].copy()

    def _score_all(self, popularity_index: int) -> np.ndarray:
        seed = optimal_samples_seed(self.config.seed, popularity_index)
        slots = self.sample_slots(self.config, popularity_index, self.samples, seed)
        total = np.zeros(len(self.caches))
        for slot in slots:
            total += self._score_slot(slot)
        return total / (len(slots) * len(slots[0].services))

    def _score_slot(self, slot: SlotState) -> np.ndarray:
        """sum_u G_u under the optimal allocation, for every cache, in one slot."""
        bandwidth = self.allocator.bandwidth(slot)
        served = self.caches[:, slot.services]
        _, first, inverse = np.unique(served, axis=0, return_index=True, return_inverse=True)
        objectives = np.array(
            [self.allocator.solve(slot, self.caches[i], bandwidth).objective for i in first]
        )
        return objectives[inverse.ravel()]
