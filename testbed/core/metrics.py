"""Metrics over slot outcomes: one accumulator for every loop, one ``summarise`` over runs.

:class:`SlotMetrics` sums what the slots and frames of a run gave (every user-slot weighs
the same) and reports the averages of :class:`RunSummary`; ``utility`` is eq. (11).
:func:`summarise` turns rows of several runs into means with 95% Student-t intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from testbed.core.records import SlotOutcome


@dataclass(frozen=True)
class RunSummary:
    """Averages over every user-slot of a run (``utility`` is eq. (11))."""

    caching_policy: str
    allocation_policy: str
    episodes: int
    seed: int
    slots: int
    utility: float
    hit_ratio: float
    violation_rate: float
    mean_slot_reward: float
    mean_frame_reward: float
    mean_delay_s: float
    mean_quality: float
    decision_ms_per_slot: float
    caching_ms_per_frame: float
    overfull_frames: int

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


class SlotMetrics:
    """Running sums over the slots and frames of a run (or of one episode)."""

    def __init__(self) -> None:
        self.user_slots = 0
        self.slots = 0
        self.frames = 0
        self.utility = self.hits = self.violations = self.delay_s = self.quality = 0.0
        self.slot_reward = self.frame_reward = 0.0
        self.decision_s = self.caching_s = 0.0
        self.overfull = 0

    def add_slot(self, outcome: SlotOutcome, decision_s: float = 0.0) -> None:
        """One served slot and the time its allocation took to decide."""
        self.user_slots += outcome.utility.shape[-1]
        self.utility += float(outcome.utility.sum())
        self.hits += float(outcome.cached.sum())
        self.violations += float(outcome.violation.sum())
        self.delay_s += float(outcome.total_s.sum())
        self.quality += float(outcome.quality.sum())
        self.slot_reward += float(outcome.reward)
        self.decision_s += decision_s
        self.slots += 1

    def add_frame(self, frame_reward: float, cache_fits: bool, caching_s: float = 0.0) -> None:
        """One finished frame: its eq. (32) reward, whether its cache met (11d)."""
        self.frame_reward += frame_reward
        self.overfull += not cache_fits
        self.caching_s += caching_s
        self.frames += 1

    def means(self) -> dict[str, float]:
        """Per-user-slot averages (NaN before the first slot), per-slot and per-frame ones."""
        n, slots, frames = self.user_slots, self.slots, self.frames
        nan = float("nan")
        return {
            "utility": self.utility / n if n else nan,
            "hit_ratio": self.hits / n if n else nan,
            "violation_rate": self.violations / n if n else nan,
            "mean_slot_reward": self.slot_reward / slots if slots else nan,
            "mean_frame_reward": self.frame_reward / frames if frames else nan,
            "mean_delay_s": self.delay_s / n if n else nan,
            "mean_quality": self.quality / n if n else nan,
            "decision_ms_per_slot": 1e3 * self.decision_s / slots if slots else nan,
            "caching_ms_per_frame": 1e3 * self.caching_s / frames if frames else nan,
        }

    def summary(
        self, caching_policy: str, allocation_policy: str, episodes: int, seed: int
    ) -> RunSummary:
        return RunSummary(
            caching_policy=caching_policy,
            allocation_policy=allocation_policy,
            episodes=episodes,
            seed=seed,
            slots=self.slots,
            overfull_frames=self.overfull,
            **self.means(),
        )


def confidence_halfwidth(values: np.ndarray, level: float = 0.95) -> float:
    """Half-width of the Student-t confidence interval of the mean; NaN for fewer than two
    values, which give no interval (a zero would claim a certainty one value cannot)."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return float("nan")
    sem = values.std(ddof=1) / np.sqrt(values.size)
    return float(stats.t.ppf(0.5 + level / 2, values.size - 1) * sem)


def summarise(rows: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean and 95% CI half-width (``<metric>_ci95``) of every metric per group of ``keys``,
    groups in the order first seen, with the number of rows of each group as ``seeds``."""
    out = []
    for key, group in rows.groupby(list(keys), sort=False):
        entry = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        entry["seeds"] = len(group)
        for metric in metrics:
            entry[metric] = float(group[metric].mean())
            entry[f"{metric}_ci95"] = confidence_halfwidth(group[metric].to_numpy())
        out.append(entry)
    return pd.DataFrame(out)
