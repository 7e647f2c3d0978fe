"""T2DRL, Algorithm 1: DDQN caches once per frame, D3PG (or DDPG) allocates once per slot.

The algorithm, one job per module:

* :mod:`~agents.t2drl.config`: the hyperparameters of a run (:class:`TrainConfig`),
  resolved against one of the :data:`PRESETS` when built;
* :mod:`~agents.t2drl.pair`: the two agents of one instance (:class:`T2DRLAgents`) and
  their tensors by name;
* :mod:`~agents.t2drl.amender`: the differentiable Sec. 6.2.2 amender (:class:`TorchAmender`);
* :mod:`~agents.t2drl.learners`: the two learners in the frame/slot loop
  (:class:`AllocationLearner`, lines 13-35, and :class:`CachingLearner`, lines 7 and 38-46)
  and the greedy credit (:class:`GreedyCredit`);
* :mod:`~agents.t2drl.acting`: trained agents acting with exploration off
  (:class:`LearnedCaching`, :class:`LearnedAllocation`) and the shipped policies.

The loop, the run folder, the metrics and the checkpoints are the application's
(``testbed.training.trainer``, ``testbed.runs``).
"""

from agents.t2drl.acting import SHIPPED_POLICIES_DIR, LearnedAllocation, LearnedCaching
from agents.t2drl.amender import TorchAmender
from agents.t2drl.config import (
    AGENTS,
    CACHING_AGENTS,
    CREDITS,
    PRESETS,
    Preset,
    TrainConfig,
)
from agents.t2drl.learners import (
    LOSS_KEYS,
    METRIC_COLUMNS,
    AllocationLearner,
    CachingLearner,
    GreedyCredit,
)
from agents.t2drl.pair import T2DRLAgents, refuse_non_finite

__all__ = [
    "AGENTS",
    "CACHING_AGENTS",
    "CREDITS",
    "LOSS_KEYS",
    "METRIC_COLUMNS",
    "PRESETS",
    "SHIPPED_POLICIES_DIR",
    "AllocationLearner",
    "CachingLearner",
    "GreedyCredit",
    "LearnedAllocation",
    "LearnedCaching",
    "Preset",
    "T2DRLAgents",
    "TorchAmender",
    "TrainConfig",
    "refuse_non_finite",
]
