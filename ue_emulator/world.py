"""The users' stochastic world as small, swappable components (Secs. 3.2-3.3, 7.1).

* :class:`MarkovChain`: a finite-state chain; drives gamma(t) per frame (eq. (37)) and the
  location state lambda_t(k) per slot (eq. (36)).
* :class:`Placement`: where users stand in a location state. Three defaults, on the
  ``area_side_m`` square with the BS at its centre (0, 0):

  - ``UniformPlacement`` (lambda_1): uniform over the square;
  - ``ConcentratedPlacement`` (lambda_2): isotropic Gaussian around the BS with
    ``concentrated_sigma_m`` per axis, redrawn until inside the square;
  - ``BoundaryPlacement`` (lambda_3): uniform over the band of width ``boundary_band_m``
    along the square's edge (the cell-edge users).

  Every placement keeps users at least ``min_distance_m`` from the BS (redraw), so that
  the path loss of eq. (3) stays finite. Positions are drawn afresh each slot from the
  current state's distribution.
* :class:`RayleighFading`: |delta|^2 ~ Exp(1), i.i.d. per user and slot (eq. (2)).
* :class:`ZipfRequests`: the service type of each user from eq. (1) at the frame's gamma.
* :class:`InputSizes`: d_in uniform in ``input_size_mb``.

:class:`World` composes them. Each component draws from its own generator, spawned from
one seed, so the world is exogenous: the same seed gives the same users, channels and
requests whatever the policies decide, in the simulator and in the live loop alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np

from testbed.core.config import BITS_PER_MB, NetworkConfig, ScenarioConfig
from testbed.core.records import FrameState, SlotState
from testbed.core.system_model import channel_gain, zipf_pmf

LOCATION_STATES = ("uniform", "concentrated", "boundary")


def stationary_distribution(transition: np.ndarray) -> np.ndarray:
    """The left eigenvector of a row-stochastic matrix for eigenvalue 1, normalised."""
    values, vectors = np.linalg.eig(np.asarray(transition, dtype=float).T)
    vec = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    vec = np.abs(vec)
    return vec / vec.sum()


class MarkovChain:
    """A finite-state Markov chain; the initial state is drawn from its stationary law."""

    def __init__(self, transition: np.ndarray) -> None:
        self.transition = np.asarray(transition, dtype=float)
        self.initial = stationary_distribution(self.transition)
        self._initial_cdf = np.cumsum(self.initial)
        self._row_cdf = np.cumsum(self.transition, axis=1)
        self.state = 0

    @staticmethod
    def _draw(cdf: np.ndarray, rng: np.random.Generator) -> int:
        # inverse-CDF draw; min() guards against a last cumulative sum of 1 - 1e-16
        return min(int(np.searchsorted(cdf, rng.random(), side="right")), len(cdf) - 1)

    def reset(self, rng: np.random.Generator) -> int:
        self.state = self._draw(self._initial_cdf, rng)
        return self.state

    def step(self, rng: np.random.Generator) -> int:
        self.state = self._draw(self._row_cdf[self.state], rng)
        return self.state


class Placement(ABC):
    """User positions (metres, BS at the origin) for one location state."""

    def __init__(self, network: NetworkConfig) -> None:
        self.half_side_m = network.area_side_m / 2.0
        self.min_distance_m = network.min_distance_m

    @abstractmethod
    def _propose(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Candidate positions, shape (count, 2); may violate the distance floor."""

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        positions = np.empty((count, 2))
        missing = np.arange(count)
        while missing.size:
            proposal = self._propose(rng, missing.size)
            ok = (np.hypot(proposal[:, 0], proposal[:, 1]) >= self.min_distance_m) & (
                np.abs(proposal).max(axis=1) <= self.half_side_m
            )
            positions[missing[ok]] = proposal[ok]
            missing = missing[~ok]
        return positions


class UniformPlacement(Placement):
    """lambda_1: uniform over the square."""

    def _propose(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return rng.uniform(-self.half_side_m, self.half_side_m, size=(count, 2))


class ConcentratedPlacement(Placement):
    """lambda_2: Gaussian around the BS."""

    def __init__(self, network: NetworkConfig) -> None:
        super().__init__(network)
        self.sigma_m = network.concentrated_sigma_m

    def _propose(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return rng.normal(0.0, self.sigma_m, size=(count, 2))


class BoundaryPlacement(Placement):
    """lambda_3: uniform over the band of width ``boundary_band_m`` inside the square's edge."""

    def __init__(self, network: NetworkConfig) -> None:
        super().__init__(network)
        self.band_m = network.boundary_band_m

    def _propose(self, rng: np.random.Generator, count: int) -> np.ndarray:
        # The band is four equal strips (side x band, corners shared by rotation): pick a
        # strip, a position along it and a depth into it.
        along = rng.uniform(-self.half_side_m, self.half_side_m - self.band_m, count)
        depth = rng.uniform(0.0, self.band_m, count)
        x = along + self.band_m  # runs over (-h + band, h]
        y = self.half_side_m - depth
        strip = rng.integers(0, 4, count)
        angle = strip * (np.pi / 2.0)
        cos, sin = np.round(np.cos(angle)), np.round(np.sin(angle))
        return np.stack([cos * x - sin * y, sin * x + cos * y], axis=1)


class RayleighFading:
    """|delta|^2 for delta ~ CN(0, 1): exponential with unit mean."""

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return rng.exponential(1.0, count)


class ZipfRequests:
    """Service types from eq. (1); 0-based (type m is the paper's m + 1)."""

    def __init__(self, num_models: int) -> None:
        self.num_models = num_models
        self._cdf: dict[float, np.ndarray] = {}

    def sample(self, rng: np.random.Generator, count: int, gamma: float) -> np.ndarray:
        cdf = self._cdf.get(gamma)
        if cdf is None:
            cdf = self._cdf[gamma] = np.cumsum(zipf_pmf(self.num_models, gamma))
        draws = np.searchsorted(cdf, rng.random(count), side="right")
        return np.minimum(draws, self.num_models - 1)


class InputSizes:
    """d_in in bits, uniform over the configured MB range."""

    def __init__(self, network: NetworkConfig) -> None:
        self.low_mb, self.high_mb = network.input_size_mb

    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        return rng.uniform(self.low_mb, self.high_mb, count) * BITS_PER_MB


_STREAMS = ("popularity", "location", "placement", "fading", "requests", "inputs")


class World:
    """Frames of K slots for U users, drawn from one seed per episode."""

    def __init__(self, config: ScenarioConfig) -> None:
        net, cat = config.network, config.catalogue
        self.num_users = net.num_users
        self.slots_per_frame = config.timing.slots_per_frame
        self.popularity_states = np.asarray(cat.popularity_states, dtype=float)
        self.popularity = MarkovChain(np.asarray(cat.popularity_transition))
        self.location = MarkovChain(np.asarray(net.location_transition))
        self.placements: tuple[Placement, ...] = (
            UniformPlacement(net),
            ConcentratedPlacement(net),
            BoundaryPlacement(net),
        )
        self.fading = RayleighFading()
        self.requests = ZipfRequests(cat.num_models)
        self.inputs = InputSizes(net)
        self._rngs: dict[str, np.random.Generator] = {}
        self.frame = -1
        self.slot = -1
        self.reset(config.seed)

    def reset(self, seed: int | np.random.SeedSequence) -> None:
        """Reseed every stream; the next :meth:`begin_frame` starts frame 0."""
        seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self._rngs = dict(
            zip(_STREAMS, (np.random.default_rng(s) for s in seq.spawn(len(_STREAMS))), strict=True)
        )
        self.frame = -1
        self.slot = -1

    def begin_frame(self) -> FrameState:
        """Advance gamma(t) (initial state from the stationary law, then eq. (37))."""
        rng = self._rngs["popularity"]
        index = self.popularity.reset(rng) if self.frame < 0 else self.popularity.step(rng)
        self.frame += 1
        self.slot = -1
        return FrameState(self.frame, index, float(self.popularity_states[index]))

    def next_slot(self) -> SlotState:
        """Draw slot k: location state (eq. (36)), positions, fading, requests, input sizes."""
        if self.frame < 0:
            raise RuntimeError("call begin_frame() before next_slot()")
        if self.slot + 1 >= self.slots_per_frame:
            raise RuntimeError(f"frame {self.frame} already has {self.slots_per_frame} slots")
        first = self.frame == 0 and self.slot < 0
        rng_loc = self._rngs["location"]
        loc = self.location.reset(rng_loc) if first else self.location.step(rng_loc)
        self.slot += 1
        return self.draw_slot(self._rngs, self.frame, self.slot, self.popularity.state, loc)

    def draw_slot(
        self,
        rngs: Mapping[str, np.random.Generator],
        frame: int,
        slot: int,
        popularity_index: int,
        location_state: int,
    ) -> SlotState:
        """Positions, fading, requests and input sizes of one slot in the given states.

        ``rngs`` maps the streams ``placement``, ``fading``, ``requests`` and ``inputs`` to
        generators (one generator may serve all of them).
        """
        positions = self.placements[location_state].sample(rngs["placement"], self.num_users)
        distance_m = np.hypot(positions[:, 0], positions[:, 1])
        fading = self.fading.sample(rngs["fading"], self.num_users)
        gamma = float(self.popularity_states[popularity_index])
        return SlotState(
            frame=frame,
            slot=slot,
            popularity_index=popularity_index,
            gamma=gamma,
            location_state=location_state,
            positions_m=positions,
            distance_m=distance_m,
            fading_power=fading,
            channel_gain=channel_gain(distance_m / 1000.0, fading),  # eq. (3) takes km
            services=self.requests.sample(rngs["requests"], self.num_users, gamma),
            input_bits=self.inputs.sample(rngs["inputs"], self.num_users),
        )


def sample_slots(
    config: ScenarioConfig, popularity_index: int, count: int, seed: np.random.SeedSequence
) -> list[SlotState]:
    """``count`` independent slots of the world at one popularity state.

    The location state is drawn from its chain's stationary law (the law of every slot of
    an episode, whose chain starts there), then positions, fading, requests and input sizes
    from the same components as :class:`World`. The optimiser scores caches on them.
    """
    world = World(config)
    rng = np.random.default_rng(seed)
    streams = {name: rng for name in ("placement", "fading", "requests", "inputs")}
    slots = []
    for k in range(count):
        location = int(rng.choice(len(world.location.initial), p=world.location.initial))
        slots.append(world.draw_slot(streams, 0, k, popularity_index, location))
    return slots
