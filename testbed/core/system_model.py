"""The paper's system model (Secs. 3, 6.2.2, 6.3.2) as pure, vectorised numpy functions.

Every function broadcasts over leading axes (users, or batch x users) and carries the
paper's equation number. Distances enter eq. (3) in km. Indices are 0-based: model m in
code is model m+1 in the paper.

Degenerate inputs have defined results, never NaN: a zero bandwidth share gives a zero
rate and an infinite delay (callers cap it, see :func:`evaluate_slot`); an all-zero raw
action is amended to the even split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testbed.core.config import ModelCatalogue, ScenarioConfig, dbm_to_watt
from testbed.core.records import SlotOutcome, SlotState

_LN2 = np.log(2.0)


def zipf_pmf(num_models: int, gamma: float) -> np.ndarray:
    """eq. (1): P{phi = m} = m^-gamma / sum_i i^-gamma, for paper ranks m = 1..M."""
    ranks = np.arange(1, num_models + 1, dtype=float)
    weights = ranks ** (-float(gamma))
    return weights / weights.sum()


def path_loss_db(distance_km: np.ndarray) -> np.ndarray:
    """eq. (3): g = -128.1 - 37.6 log10(dis), dis in km; returns the gain in dB (negative)."""
    return -128.1 - 37.6 * np.log10(np.asarray(distance_km, dtype=float))


def channel_gain(distance_km: np.ndarray, fading_power: np.ndarray) -> np.ndarray:
    """h = g |delta|^2 in linear scale, g from eq. (3), |delta|^2 ~ Exp(1) for Rayleigh fading."""
    return 10.0 ** (path_loss_db(distance_km) / 10.0) * np.asarray(fading_power, dtype=float)


def uplink_rate_bps(
    bandwidth_share: np.ndarray,
    uplink_bandwidth_hz: float,
    tx_power_w: float,
    gain: np.ndarray,
    noise_psd_w_per_hz: float,
) -> np.ndarray:
    """eq. (2): R_up = b W log2(1 + p h / (N0 b W)); a zero share gives rate 0 (its limit)."""
    share = np.asarray(bandwidth_share, dtype=float)
    bw_hz = share * uplink_bandwidth_hz
    positive = bw_hz > 0
    safe_bw = np.where(positive, bw_hz, 1.0)
    snr = tx_power_w * np.asarray(gain, dtype=float) / (noise_psd_w_per_hz * safe_bw)
    return np.where(positive, safe_bw * np.log2(1.0 + snr), 0.0)


def uplink_delay_s(
    input_bits: np.ndarray, rate_bps: np.ndarray, cached: np.ndarray, backhaul_up_bps: float
) -> np.ndarray:
    """eq. (4): d_in / R_up, plus d_in / R_bc when the requested model is not cached."""
    input_bits = np.asarray(input_bits, dtype=float)
    rate = np.asarray(rate_bps, dtype=float)
    radio = np.divide(
        input_bits, rate, out=np.full(np.broadcast(input_bits, rate).shape, np.inf), where=rate > 0
    )
    return radio + np.where(cached, 0.0, input_bits / backhaul_up_bps)


def downlink_rate_bps(
    downlink_bandwidth_hz: float, bs_power_w: float, gain: np.ndarray, noise_psd_w_per_hz: float
) -> np.ndarray:
    """eq. (5): R_dw = W_dw log2(1 + p_BS h / (N0 W_dw)), per-user bandwidth W_dw."""
    snr = bs_power_w * np.asarray(gain, dtype=float) / (noise_psd_w_per_hz * downlink_bandwidth_hz)
    return downlink_bandwidth_hz * np.log2(1.0 + snr)


def downlink_delay_s(
    output_bits: np.ndarray, rate_bps: np.ndarray, cached: np.ndarray, backhaul_down_bps: float
) -> np.ndarray:
    """eq. (6): d_op / R_dw, plus d_op / R_cb when the requested model is not cached."""
    output_bits = np.asarray(output_bits, dtype=float)
    return output_bits / np.asarray(rate_bps, dtype=float) + np.where(
        cached, 0.0, output_bits / backhaul_down_bps
    )


def quality_progress(steps: np.ndarray, a1: np.ndarray, a3: np.ndarray) -> np.ndarray:
    """eq. (7)'s progress from A1 to A3 steps: 0 up to A1, linear, 1 from A3 on."""
    return np.clip((np.asarray(steps, dtype=float) - a1) / (a3 - a1), 0.0, 1.0)


def edge_quality(
    steps: np.ndarray, a1: np.ndarray, a2: np.ndarray, a3: np.ndarray, a4: np.ndarray
) -> np.ndarray:
    """eq. (7) at the edge: quality A2 up to A1 steps, linear down to A4 at A3 steps, A4 beyond."""
    return a2 + (a4 - a2) * quality_progress(steps, a1, a3)


def served_quality(
    steps: np.ndarray,
    cached: np.ndarray,
    a1: np.ndarray,
    a2: np.ndarray,
    a3: np.ndarray,
    a4: np.ndarray,
) -> np.ndarray:
    """eq. (7): :func:`edge_quality` for a cached model; A4 (the cloud's full quality) on a miss."""
    return np.where(cached, edge_quality(steps, a1, a2, a3, a4), a4)


def generation_delay_s(
    steps: np.ndarray, cached: np.ndarray, b1: np.ndarray, b2: np.ndarray, a3: np.ndarray
) -> np.ndarray:
    """eq. (8): D_gt = B1 steps + B2 at the edge; B1 A3 + B2 at the cloud on a miss."""
    steps = np.asarray(steps, dtype=float)
    return np.where(cached, b1 * steps + b2, b1 * a3 + b2)


def total_delay_s(up_s: np.ndarray, down_s: np.ndarray, gen_s: np.ndarray) -> np.ndarray:
    """eq. (9): D_tl = D_up + D_dw + D_gt."""
    return np.asarray(up_s) + np.asarray(down_s) + np.asarray(gen_s)


def utility(delay_s: np.ndarray, quality: np.ndarray, alpha: float) -> np.ndarray:
    """eq. (10): G = alpha D_tl + (1 - alpha) TV, TV being the quality measure of eq. (7)
    (lower is better)."""
    return alpha * np.asarray(delay_s) + (1.0 - alpha) * np.asarray(quality)


def slot_reward(
    utility_per_user: np.ndarray, delay_s: np.ndarray, slot_duration_s: float, penalty: float
) -> np.ndarray:
    """eq. (23): r = -(1/U) sum_u (G_u + 1{D_tl > tau} chi), over the last axis."""
    violated = np.asarray(delay_s) > slot_duration_s
    return -np.mean(np.asarray(utility_per_user) + penalty * violated, axis=-1)


def cache_size_gb(cache: np.ndarray, size_gb: np.ndarray) -> np.ndarray:
    """Left side of (11d): sum_m rho_m c_m."""
    return np.asarray(cache, dtype=float) @ np.asarray(size_gb, dtype=float)


def frame_reward(
    slot_rewards: np.ndarray,
    cache: np.ndarray,
    size_gb: np.ndarray,
    capacity_gb: float,
    penalty: float,
) -> float:
    """eq. (32): mean of the K slot rewards, minus Xi when the cache breaks (11d).

    The paper writes ``-(1/K) sum_k r_t(k)``; since r_t(k) of eq. (23) is already the
    negated utility, that sign would reward a worse utility and contradicts "aligned with
    the negative value of (13)". We use ``+(1/K) sum_k r_t(k)``, i.e. minus the mean utility.
    """
    over = not cache_fits(cache, size_gb, capacity_gb)
    return float(np.mean(slot_rewards)) - penalty * over


STEP_AMENDERS = ("paper", "cap")


def amend_bandwidth(raw_share: np.ndarray) -> np.ndarray:
    """Sec. 6.2.2: b_u = b~_u / sum_u b~_u, so that (11e) holds; all zeros give the even split."""
    raw = np.clip(np.asarray(raw_share, dtype=float), 0.0, None)
    total = raw.sum(axis=-1, keepdims=True)
    even = np.full_like(raw, 1.0 / raw.shape[-1])
    return np.where(total > 0, raw / np.where(total > 0, total, 1.0), even)


def amend_steps(
    raw_share: np.ndarray, served_at_edge: np.ndarray, mode: str = "paper"
) -> np.ndarray:
    """Sec. 6.2.2: xi_u = xi~_u rho_m / sum_u rho_m xi~_u, so (11f) and (11g) hold.

    Users whose model is not cached get zero. If every cached user's raw share is zero,
    the steps are split evenly over the cached users; with no cached user, all are zero.

    ``mode="cap"`` (not the paper's) rescales only when the raw shares of the cached users
    sum above 1, so an agent can leave steps unused: (11f) is an inequality, and the
    paper's amender, which always spends all L steps, cannot reach allocations where extra
    steps cost more delay than they buy in quality.
    """
    if mode not in STEP_AMENDERS:
        raise ValueError(f"steps amender {mode!r}: allowed {list(STEP_AMENDERS)}")
    served = np.asarray(served_at_edge, dtype=bool)
    raw = np.clip(np.asarray(raw_share, dtype=float), 0.0, None) * served
    total = raw.sum(axis=-1, keepdims=True)
    if mode == "cap":
        return raw / np.maximum(total, 1.0)
    count = served.sum(axis=-1, keepdims=True)
    even = np.where(served, 1.0 / np.maximum(count, 1), 0.0)
    return np.where(total > 0, raw / np.where(total > 0, total, 1.0), even)


def amend_allocation(
    raw_action: np.ndarray, served_at_edge: np.ndarray, steps_mode: str = "paper"
) -> tuple[np.ndarray, np.ndarray]:
    """Sec. 6.2.2 on a raw action [b~ (U values), xi~ (U values)] (may carry a batch axis)."""
    users = np.shape(served_at_edge)[-1]
    raw = np.asarray(raw_action, dtype=float)
    b = amend_bandwidth(raw[..., :users])
    return b, amend_steps(raw[..., users:], served_at_edge, steps_mode)


def amend_cache(action: int, num_models: int) -> np.ndarray:
    """Sec. 6.3.2: rho_m = floor(a / 2^(M-m)) mod 2 (paper's m = 1..M, so model 0 is the MSB)."""
    if not 0 <= int(action) < 2**num_models:
        raise ValueError(f"cache action {action} outside [0, {2**num_models - 1}]")
    exponents = num_models - 1 - np.arange(num_models)
    return ((int(action) >> exponents) & 1).astype(bool)


def cache_to_action(cache: np.ndarray) -> int:
    """Inverse of :func:`amend_cache`."""
    bits = np.asarray(cache, dtype=bool)
    return int(sum(int(bit) << (len(bits) - 1 - i) for i, bit in enumerate(bits)))


def all_caches(num_models: int) -> np.ndarray:
    """Every cache vector, shape (2^M, M), row a being :func:`amend_cache` (a, M)."""
    codes = np.arange(2**num_models)
    return ((codes[:, None] >> (num_models - 1 - np.arange(num_models))) & 1).astype(bool)


def feasible_actions(size_gb: np.ndarray, capacity_gb: float) -> np.ndarray:
    """The action codes (Sec. 6.3.2) of every cache satisfying (11d), ascending."""
    caches = all_caches(len(size_gb))
    return np.flatnonzero(caches @ np.asarray(size_gb, dtype=float) <= capacity_gb + 1e-9)


def feasible_caches(size_gb: np.ndarray, capacity_gb: float) -> np.ndarray:
    """Every cache satisfying (11d), shape (F, M), in the order of the action code of Sec. 6.3.2."""
    return all_caches(len(size_gb))[feasible_actions(size_gb, capacity_gb)]


def cache_fits(cache: np.ndarray, size_gb: np.ndarray, capacity_gb: float) -> bool:
    """(11d): sum_m rho_m c_m <= C."""
    return float(cache_size_gb(cache, size_gb)) <= capacity_gb + 1e-9


def served_at_edge(cache: np.ndarray, services: np.ndarray) -> np.ndarray:
    """rho_{phi_u}: whether each user's requested model is cached."""
    return np.asarray(cache, dtype=bool)[np.asarray(services)]


@dataclass(frozen=True)
class RadioParams:
    """Linear-unit radio constants, converted once from the config."""

    uplink_bandwidth_hz: float
    downlink_bandwidth_hz: float
    user_tx_power_w: float
    bs_tx_power_w: float
    noise_psd_w_per_hz: float
    backhaul_up_bps: float
    backhaul_down_bps: float
    slot_duration_s: float
    total_steps: int
    alpha: float
    slot_penalty: float
    delay_cap_s: float

    @classmethod
    def from_config(cls, config: ScenarioConfig) -> RadioParams:
        net = config.network
        return cls(
            uplink_bandwidth_hz=net.uplink_bandwidth_hz,
            downlink_bandwidth_hz=net.downlink_bandwidth_hz,
            user_tx_power_w=float(dbm_to_watt(net.user_tx_power_dbm)),
            bs_tx_power_w=float(dbm_to_watt(net.bs_tx_power_dbm)),
            noise_psd_w_per_hz=float(dbm_to_watt(net.noise_psd_dbm_per_hz)),
            backhaul_up_bps=net.backhaul_up_rate_bps,
            backhaul_down_bps=net.backhaul_down_rate_bps,
            slot_duration_s=config.timing.slot_duration_s,
            total_steps=config.catalogue.total_steps,
            alpha=config.utility.alpha,
            slot_penalty=config.utility.slot_penalty,
            delay_cap_s=config.utility.delay_cap_s,
        )


def _broadcast(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return values if values.shape == shape else np.broadcast_to(values, shape)


def evaluate_slot(
    radio: RadioParams,
    catalogue: ModelCatalogue,
    cache: np.ndarray,
    services: np.ndarray,
    gain: np.ndarray,
    input_bits: np.ndarray,
    bandwidth_share: np.ndarray,
    step_share: np.ndarray,
) -> SlotOutcome:
    """Score one slot (eqs. (2)-(10), (23)) for amended shares b and xi.

    ``bandwidth_share`` and ``step_share`` may carry a leading batch axis (candidate
    allocations of the same slot). The uplink delay of a user with no uplink bandwidth is
    infinite by eq. (2), and huge with a sliver of it; uplink delays are recorded at most
    as ``delay_cap_s`` (> tau, default 200 s, far above any served user's seconds) so that
    averages and rewards stay finite, and such a user counts as an (11h) violation.
    """
    services = np.asarray(services)
    cached = np.asarray(cache, dtype=bool)[services]
    output_bits = catalogue.output_bits[services]
    a1, a2 = catalogue.a1_steps[services], catalogue.a2_quality[services]
    a3, a4 = catalogue.a3_steps[services], catalogue.a4_quality[services]
    b1, b2 = catalogue.b1_s_per_step[services], catalogue.b2_s[services]
    steps = np.asarray(step_share, dtype=float) * radio.total_steps
    rate_up = uplink_rate_bps(
        bandwidth_share,
        radio.uplink_bandwidth_hz,
        radio.user_tx_power_w,
        gain,
        radio.noise_psd_w_per_hz,
    )
    rate_dw = downlink_rate_bps(
        radio.downlink_bandwidth_hz, radio.bs_tx_power_w, gain, radio.noise_psd_w_per_hz
    )
    # a starved user (rate 0 or near it in eq. (2)) never finishes: record the cap
    up_s = np.minimum(
        uplink_delay_s(input_bits, rate_up, cached, radio.backhaul_up_bps), radio.delay_cap_s
    )
    dw_s = downlink_delay_s(output_bits, rate_dw, cached, radio.backhaul_down_bps)
    gen_s = generation_delay_s(steps, cached, b1, b2, a3)
    total_s = total_delay_s(up_s, dw_s, gen_s)
    quality = served_quality(steps, cached, a1, a2, a3, a4)
    g = utility(total_s, quality, radio.alpha)
    violation = total_s > radio.slot_duration_s
    reward = slot_reward(g, total_s, radio.slot_duration_s, radio.slot_penalty)
    return SlotOutcome(
        cached=_broadcast(cached, steps.shape),
        steps=steps,
        rate_up_bps=rate_up,
        rate_dw_bps=_broadcast(rate_dw, steps.shape),
        up_s=up_s,
        dw_s=_broadcast(dw_s, steps.shape),
        gen_s=gen_s,
        total_s=total_s,
        quality=quality,
        utility=g,
        violation=violation,
        reward=reward,
    )


def greedy_cache(priority: np.ndarray, size_gb: np.ndarray, capacity_gb: float) -> np.ndarray:
    """Cache models in decreasing ``priority`` (ties: lower index first), skipping any that
    no longer fits, so that (11d) holds."""
    cache = np.zeros(len(size_gb), dtype=bool)
    used_gb = 0.0
    for m in np.argsort(-np.asarray(priority, dtype=float), kind="stable"):
        if used_gb + size_gb[m] <= capacity_gb + 1e-9:
            cache[m] = True
            used_gb += float(size_gb[m])
    return cache


def round_steps(step_share: np.ndarray, total_steps: int) -> np.ndarray:
    """Whole denoising steps for shares xi (what a real edge runs), never more than L in all.

    Largest remainders: every user gets floor(xi_u L); the steps left up to
    floor(sum_u xi_u L) (at most L, since (11f) caps sum xi at 1) go one each to the users
    with the largest fractional parts (ties: lower index). A user with xi_u = 0 gets 0.
    """
    wanted = np.clip(np.asarray(step_share, dtype=float), 0.0, 1.0) * total_steps
    steps = np.floor(wanted + 1e-9).astype(int)
    budget = min(int(np.floor(wanted.sum() + 1e-9)), total_steps)
    spare = budget - int(steps.sum())
    if spare > 0:
        remainder = np.where(wanted > 0, wanted - steps, -1.0)
        order = np.argsort(-remainder, kind="stable")[:spare]
        steps[order] += 1
    return steps


def popular_cache(config: ScenarioConfig, catalogue: ModelCatalogue, gamma: float) -> np.ndarray:
    """The most popular models at skewness ``gamma`` that fit the capacity (greedy by eq. (1))."""
    pmf = zipf_pmf(catalogue.num_models, gamma)
    return greedy_cache(pmf, catalogue.size_gb, config.catalogue.cache_capacity_gb)


def even_allocation(slot: SlotState, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The even split of RCARS: b_u = 1/U, xi_u = 1/(number of users served at the edge)."""
    served = served_at_edge(cache, slot.services)
    return amend_allocation(np.ones(2 * len(served)), served)


def score_slot(
    radio: RadioParams,
    catalogue: ModelCatalogue,
    slot: SlotState,
    cache: np.ndarray,
    bandwidth_share: np.ndarray,
    step_share: np.ndarray,
) -> SlotOutcome:
    """:func:`evaluate_slot` on a slot of the world (shares may carry a batch axis)."""
    return evaluate_slot(
        radio,
        catalogue,
        cache,
        slot.services,
        slot.channel_gain,
        slot.input_bits,
        bandwidth_share,
        step_share,
    )


class InfeasibleAllocation(ValueError):
    """An allocation breaks one of (11b)-(11g)."""


def check_allocation(
    bandwidth_share: np.ndarray,
    step_share: np.ndarray,
    served: np.ndarray,
    tol: float = 1e-6,
) -> None:
    """Raise :class:`InfeasibleAllocation` naming the first constraint of (11b)-(11g) broken.

    ``served`` is rho_{phi_u} (:func:`served_at_edge`).
    """
    b, xi = np.asarray(bandwidth_share, dtype=float), np.asarray(step_share, dtype=float)
    if b.shape != xi.shape or b.shape != np.shape(served):
        raise InfeasibleAllocation(f"shapes differ: b {b.shape}, xi {xi.shape}")
    if not (np.isfinite(b).all() and np.isfinite(xi).all()):
        raise InfeasibleAllocation("allocation holds NaN or inf")
    if (b < -tol).any() or (b > 1 + tol).any():
        raise InfeasibleAllocation("(11b) broken: b_u outside [0, 1]")
    if (xi < -tol).any() or (xi > 1 + tol).any():
        raise InfeasibleAllocation("(11c) broken: xi_u outside [0, 1]")
    if b.sum() > 1 + tol:
        raise InfeasibleAllocation(f"(11e) broken: sum b = {b.sum():.6f} > 1")
    if xi.sum() > 1 + tol:
        raise InfeasibleAllocation(f"(11f) broken: sum xi = {xi.sum():.6f} > 1")
    if (xi[~np.asarray(served, dtype=bool)] > tol).any():
        raise InfeasibleAllocation("(11g) broken: steps given to a user whose model is not cached")
