"""The hyperparameters of one training run (:class:`TrainConfig`) and the presets.

A preset is one declarative :class:`Preset`: every choice it makes for the steps amender,
the caching agent, its credit, the counterfactual caches and the agents' configs. A
:class:`TrainConfig` is resolved when it is built: a choice the user left unset takes the
preset's value, and the ``allocator`` and ``caching`` tables hold the preset's overrides
under the user's, so that ``train.json`` (:meth:`TrainConfig.to_json`) says everything the
run used. :meth:`TrainConfig.from_json` also reads the older ``train.json`` that left the
preset's choices as placeholders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from agents.d3pg import D3PGConfig
from agents.ddpg import ActorCriticConfig
from agents.ddqn import DDQNConfig
from agents.factored import FactoredConfig
from testbed.core.system_model import STEP_AMENDERS

AGENTS = ("t2drl", "ddpg-t2drl")
CACHING_AGENTS = ("ddqn", "factored")
CREDITS = ("explore", "greedy")


@dataclass(frozen=True)
class Preset:
    """Every choice of one training preset; what the user sets explicitly wins."""

    steps_amender: str
    """Sec. 6.2.2's amender of the denoising steps (``STEP_AMENDERS``)."""
    caching_agent: str
    """The caching agent (``CACHING_AGENTS``)."""
    credit: str
    """What the caching learner is credited with for a frame (``CREDITS``)."""
    counterfactuals: int = 0
    """Counterfactual caches per frame under the greedy credit (none under `explore`)."""
    allocator: dict[str, Any] = field(default_factory=dict)
    """Overrides of the allocator's config, D3PG and DDPG alike."""
    d3pg: dict[str, Any] = field(default_factory=dict)
    """Overrides of the D3PG allocator's config only."""
    caching: dict[str, Any] = field(default_factory=dict)
    """Overrides of the caching agent's config, DDQN or factored."""

    def allocator_overrides(self, agent: str) -> dict[str, Any]:
        """The allocator overrides for ``agent`` (``AGENTS``)."""
        return {**self.allocator, **(self.d3pg if agent == "t2drl" else {})}


PRESETS: dict[str, Preset] = {
    # the factored caching agent credited greedily with counterfactual caches, the
    # allocator cloning the exact optimiser
    "best": Preset(
        steps_amender="cap",
        caching_agent="factored",
        credit="greedy",
        counterfactuals=8,
        allocator={"action_map": "hard", "teacher": "optimal", "objective": "clone"},
        # Unclipped, the reverse chain is a recurrence whose gain can exceed 1: in 4 of 15
        # Fig. 7 runs its raw output grew to ~1e27 within a few episodes and the actor never
        # recovered; clipped, those runs converge (docs/agents.md).
        d3pg={"clip_x0": True},
    ),
    # the paper's agents and credit, the agents' default learning rates, the `cap` amender
    "default": Preset(steps_amender="cap", caching_agent="ddqn", credit="explore"),
    # Sec. 7.1 as printed: Adam at 1e-6 for all, the paper's steps amender
    "paper": Preset(
        steps_amender="paper",
        caching_agent="ddqn",
        credit="explore",
        allocator={"actor_lr": 1e-6, "critic_lr": 1e-6},
        caching={"lr": 1e-6},
    ),
}
"""The training presets by name (docs/agents.md compares them)."""

_PLACEHOLDERS = {"steps_amender": "", "caching_agent": "", "credit": "", "counterfactuals": -1}
"""How an older ``train.json`` left a choice to its preset."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run of Algorithm 1, resolved against its preset when built."""

    agent: str = "t2drl"
    """`t2drl` (DDQN + D3PG) or `ddpg-t2drl` (DDQN + DDPG, Sec. 7.2)."""
    episodes: int = 500
    """H of Table 2."""
    seed: int = 0
    """Seeds the networks, the exploration and the training worlds."""
    preset: str = "best"
    """`best` (the factored caching agent credited greedily, the allocator cloning the
    exact optimiser), `default` (the paper's agents with the agents' default learning
    rates) or `paper` (Sec. 7.1 as printed: Adam at 1e-6 for all, the paper's amender).
    It fills every choice left unset (``PRESETS``; docs/agents.md)."""
    threads: int = 1
    """torch CPU threads (small networks: one thread is fastest)."""
    checkpoint_every: int = 10
    """Episodes between checkpoints (and always at the end)."""
    eval_every: int = 5
    """Episodes between deterministic evaluations (exploration off) on a fixed episode."""
    steps_amender: str | None = None
    """`paper` (Sec. 6.2.2: all L steps always spent) or `cap` (rescaled only above L);
    unset: the preset's."""
    caching_agent: str | None = None
    """`ddqn` (the paper's, Sec. 6.3) or `factored` (per-model values + exact knapsack,
    ``agents.factored``); unset: the preset's."""
    credit: str | None = None
    """What the caching learner is credited with for a frame: `explore`, the frame reward
    of the slots as the exploring allocator served them (Algorithm 1, line 38), or
    `greedy`, the eq. (32) reward of the same slots re-scored by the system model under the
    allocator acting greedily (exploration off); unset: the preset's."""
    counterfactuals: int | None = None
    """With the greedy credit: random caches that fit, scored on each frame's slots beside
    the chosen one and stored as frames too (``CachingLearner``); unset: the preset's under
    the greedy credit, else 0."""
    allocator: dict[str, Any] = field(default_factory=dict)
    """Overrides of D3PGConfig / ActorCriticConfig fields; once built, the preset's
    overrides under the user's."""
    caching: dict[str, Any] = field(default_factory=dict)
    """Overrides of DDQNConfig or FactoredConfig fields (whichever agent caches); once
    built, the preset's overrides under the user's."""

    def __post_init__(self) -> None:
        for key, value in self._resolved().items():
            object.__setattr__(self, key, value)
        self.validate()

    def _resolved(self) -> dict[str, Any]:
        """The preset's values of the choices left unset, its overrides under the user's."""
        _check_choice("preset", self.preset, PRESETS)
        preset = PRESETS[self.preset]
        chosen = {key: getattr(self, key) for key in ("steps_amender", "caching_agent", "credit")}
        values = {key: getattr(preset, key) if v is None else v for key, v in chosen.items()}
        counterfactuals = self.counterfactuals
        if counterfactuals is None:
            counterfactuals = preset.counterfactuals if values["credit"] == "greedy" else 0
        return {
            **values,
            "counterfactuals": counterfactuals,
            "allocator": {
                **preset.allocator_overrides(self.agent),
                **_table("allocator", self.allocator),
            },
            "caching": {**preset.caching, **_table("caching", self.caching)},
        }

    def validate(self) -> None:
        """Refuse any value out of range, naming its key (the agents' configs included)."""
        _check_choice("agent", self.agent, AGENTS)
        _check_choice("preset", self.preset, PRESETS)
        _check_choice("steps_amender", self.steps_amender, STEP_AMENDERS)
        _check_choice("caching_agent", self.caching_agent, CACHING_AGENTS)
        _check_choice("credit", self.credit, CREDITS)
        for key in ("episodes", "threads", "checkpoint_every", "eval_every"):
            _check_int(key, getattr(self, key), 1)
        _check_int("counterfactuals", self.counterfactuals, 0)
        if self.counterfactuals and self.credit != "greedy":
            raise ValueError("counterfactuals > 0 needs credit = 'greedy'")
        self.allocator_config().validate()
        self.caching_config().validate()

    def allocator_config(self) -> ActorCriticConfig:
        """The allocator's config: D3PGConfig for `t2drl`, ActorCriticConfig for
        `ddpg-t2drl`, with the ``allocator`` overrides."""
        cls = D3PGConfig if self.agent == "t2drl" else ActorCriticConfig
        return _with_overrides(cls, self.allocator)

    def caching_config(self) -> DDQNConfig | FactoredConfig:
        """The caching agent's config, with the ``caching`` overrides."""
        cls = FactoredConfig if self.caching_agent == "factored" else DDQNConfig
        return _with_overrides(cls, self.caching)

    def to_json(self) -> dict[str, Any]:
        """The resolved fields, as ``train.json`` stores them."""
        return asdict(self)

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> TrainConfig:
        """A resolved config from user options (flags, ``--set train.*``, ``allocator.*``,
        ``caching.*``; a choice absent takes the preset's); raises ValueError or TypeError
        naming the bad key."""
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; allowed {allowed}")
        return cls(**values)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainConfig:
        """A stored ``train.json``: the resolved form, or the older form that left a choice
        to the preset with a placeholder (``""``, or ``-1`` for ``counterfactuals``) and
        held only the user's overrides in ``allocator`` and ``caching``; both resolve to
        the same config."""
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a table of training options, not {data!r}")
        values = {
            key: None if key in _PLACEHOLDERS and value == _PLACEHOLDERS[key] else value
            for key, value in data.items()
        }
        return cls.from_options(values)


def _check_choice(key: str, value: Any, allowed: Mapping[str, Any] | tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{key} = {value!r}: allowed {list(allowed)}")


def _check_int(key: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{key} = {value!r} is out of range: allowed integers >= {low}")


def _table(key: str, values: Any) -> dict[str, Any]:
    """The user's overrides in ``key``, sequences as lists (as JSON reads them back)."""
    if not isinstance(values, Mapping):
        raise TypeError(f"{key} = {values!r}: expected a table of the agent's config fields")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _with_overrides(cls: type, values: Mapping[str, Any]) -> Any:
    allowed = {f.name for f in fields(cls)}
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} key(s) {sorted(unknown)}; allowed {sorted(allowed)}"
        )
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
