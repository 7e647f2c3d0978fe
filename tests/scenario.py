"""A test helper: a scenario's config, catalogue and radio constants, scoring slots."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from testbed.core.config import ModelCatalogue, ScenarioConfig
from testbed.core.records import SlotOutcome, SlotState
from testbed.core.system_model import RadioParams, score_slot


@dataclass(frozen=True)
class Scenario:
    """A scenario's config, catalogue and radio constants: what a slot is scored with."""

    config: ScenarioConfig
    catalogue: ModelCatalogue
    radio: RadioParams

    def evaluate(
        self, slot: SlotState, cache: np.ndarray, b: np.ndarray, xi: np.ndarray
    ) -> SlotOutcome:
        return score_slot(self.radio, self.catalogue, slot, cache, b, xi)
