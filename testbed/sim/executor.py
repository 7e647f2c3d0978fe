"""The simulated testbed: the users' world of ``ue_emulator`` scored by the system model.

:class:`SimulatedExecutor` is the slot executor of simulation: eqs. (2)-(10) and (23) with
the scenario's catalogue (drawn, or a calibration profile). :func:`simulated_driver` puts it
and the world under the one frame/slot driver; the live loop swaps the executor for the
nodes and keeps everything else.
"""

from __future__ import annotations

import numpy as np

from testbed.core.config import ModelCatalogue, ScenarioConfig, build_catalogue
from testbed.core.records import SlotOutcome, SlotState
from testbed.core.system_model import RadioParams, score_slot
from testbed.sim.driver import FrameSlotDriver
from ue_emulator.world import World


class SimulatedExecutor:
    """Scores a slot with the system model instead of serving it."""

    def __init__(self, config: ScenarioConfig, catalogue: ModelCatalogue) -> None:
        self.radio = RadioParams.from_config(config)
        self.catalogue = catalogue

    def execute(
        self,
        slot: SlotState,
        cache: np.ndarray,
        bandwidth_share: np.ndarray,
        step_share: np.ndarray,
    ) -> SlotOutcome:
        return score_slot(self.radio, self.catalogue, slot, cache, bandwidth_share, step_share)


def simulated_driver(
    config: ScenarioConfig, catalogue: ModelCatalogue | None = None, check: bool = True
) -> FrameSlotDriver:
    """The frame/slot driver over the scenario's world and the system model."""
    catalogue = catalogue if catalogue is not None else build_catalogue(config.catalogue)
    return FrameSlotDriver(
        World(config),
        SimulatedExecutor(config, catalogue),
        frames=config.timing.num_frames,
        slots=config.timing.slots_per_frame,
        size_gb=catalogue.size_gb,
        capacity_gb=config.catalogue.cache_capacity_gb,
        frame_penalty=config.utility.frame_penalty,
        check=check,
    )
