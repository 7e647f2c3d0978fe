"""Trained T2DRL agents acting with exploration off, and the shipped policies."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agents.ddpg import DDPG
from agents.ddqn import DDQN
from agents.factored import FactoredCaching
from testbed.core.config import ModelCatalogue, ScenarioConfig
from testbed.core.observation import ObservationCodec
from testbed.core.records import FrameState, SlotState
from testbed.core.system_model import amend_allocation, served_at_edge

SHIPPED_POLICIES_DIR = Path(__file__).resolve().parents[1] / "pretrained"
"""The shipped policies: ``<SHIPPED_POLICIES_DIR>/<agent>``, exported runs of the default
scenario with the best preset."""


class LearnedAllocation:
    """An allocation policy from a trained actor (deterministic: exploration off)."""

    def __init__(
        self,
        agent: DDPG,
        config: ScenarioConfig,
        catalogue: ModelCatalogue,
        name: str,
        steps_amender: str = "paper",
    ) -> None:
        self.agent, self.name = agent, name
        self.codec = ObservationCodec(config, catalogue)
        self.steps_amender = steps_amender

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed  # deterministic in evaluation

    def allocate(self, slot: SlotState, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raw = self.agent.act(self.codec.encode(slot, cache), explore=False)
        return amend_allocation(raw, served_at_edge(cache, slot.services), self.steps_amender)

    def allocate_many(
        self, pairs: list[tuple[SlotState, np.ndarray]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`allocate` for many (slot, cache) pairs in one forward pass of the actor."""
        raws = self.agent.greedy_actions(np.stack([self.codec.encode(s, c) for s, c in pairs]))
        return [
            amend_allocation(raw, served_at_edge(cache, slot.services), self.steps_amender)
            for raw, (slot, cache) in zip(raws, pairs, strict=True)
        ]


class LearnedCaching:
    """A caching policy from a trained caching agent, DDQN or factored (greedy)."""

    def __init__(self, agent: DDQN | FactoredCaching, name: str) -> None:
        self.agent, self.name = agent, name

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed

    def select_cache(self, frame: FrameState) -> np.ndarray:
        return self.agent.select(frame.gamma, explore=False)
