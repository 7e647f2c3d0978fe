"""SCHRS, static caching and heuristic-based resource allocation (Sec. 7.2, after [19]).

The BS caches the most popular models at gamma_1 once and never changes them; each slot
a real-coded genetic algorithm searches (b, xi) for the lowest value of (12) in that
slot. A chromosome holds 2U genes in [0, 1] (b~ then xi~), amended by Sec. 6.2.2 so that
every individual is feasible; its fitness is -r of eq. (23) (mean G plus chi per (11h)
violation). Offspring come from binary tournaments, simulated binary crossover and
polynomial mutation (Deb's bounded forms); the best individuals survive unchanged
(elitism). The whole population is scored by one :func:`evaluate_slot` call.

Defaults (population 32, 150 generations, eta_c = 15, eta_m = 20, crossover
probability 0.9, mutation probability 1/(2U) per gene, 2 elites) keep a slot's decision
near 45 ms at U = 18 on two shared CPU cores (``benchmarks/bench_decision_time.py``;
the paper's Table 3 reports 1,128.7 ms) and beat the even split by about 4 in reward
per user; other settings in that time budget did no better. The amender makes sum xi = 1,
so the GA must spend all L steps even where the optimum spends fewer
(:mod:`agents.optimal`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from testbed.core.config import ModelCatalogue, ScenarioConfig
from testbed.core.records import FrameState, SlotState
from testbed.core.system_model import RadioParams, amend_allocation, popular_cache, score_slot


class StaticPopularCaching:
    """The most popular models at gamma_1 that fit C (11d), whatever the frame."""

    name = "schrs"

    def __init__(self, config: ScenarioConfig, catalogue: ModelCatalogue) -> None:
        gamma_1 = config.catalogue.popularity_states[0]
        self.cache = popular_cache(config, catalogue, gamma_1)

    def reset(self, seed: np.random.SeedSequence) -> None:
        del seed  # static

    def select_cache(self, frame: FrameState) -> np.ndarray:
        del frame
        return self.cache.copy()


def sbx_crossover(
    rng: np.random.Generator, first: np.ndarray, second: np.ndarray, eta: float, prob: float
) -> tuple[np.ndarray, np.ndarray]:
    """Simulated binary crossover on [0, 1] (Deb and Agrawal; bounded form of NSGA-II).

    Each pair crosses with probability ``prob``, each gene of a crossing pair with 1/2;
    the spread factor beta_q is drawn so that children stay inside the bounds.
    """
    low, high = np.minimum(first, second), np.maximum(first, second)
    gap = high - low
    crossing = (
        (rng.random(first.shape[0]) < prob)[:, None]
        & (rng.random(first.shape) < 0.5)
        & (gap > 1e-14)
    )
    safe_gap = np.where(crossing, gap, 1.0)
    u = rng.random(first.shape)

    def spread(distance_to_bound: np.ndarray) -> np.ndarray:
        beta = 1.0 + 2.0 * distance_to_bound / safe_gap
        alpha = 2.0 - beta ** -(eta + 1.0)
        inside = u <= 1.0 / alpha
        root = np.where(inside, u * alpha, 1.0 / np.maximum(2.0 - u * alpha, 1e-300))
        return root ** (1.0 / (eta + 1.0))

    child_low = 0.5 * (low + high - spread(low) * gap)
    child_high = 0.5 * (low + high + spread(1.0 - high) * gap)
    swap = rng.random(first.shape) < 0.5
    child_a = np.where(swap, child_high, child_low)
    child_b = np.where(swap, child_low, child_high)
    return (
        np.clip(np.where(crossing, child_a, first), 0.0, 1.0),
        np.clip(np.where(crossing, child_b, second), 0.0, 1.0),
    )


def polynomial_mutation(
    rng: np.random.Generator, genes: np.ndarray, eta: float, prob: float
) -> np.ndarray:
    """Polynomial mutation on [0, 1] (Deb and Goyal; bounded form of NSGA-II)."""
    mutate = rng.random(genes.shape) < prob
    u = rng.random(genes.shape)
    power = 1.0 / (eta + 1.0)
    down = 2.0 * u + (1.0 - 2.0 * u) * (1.0 - genes) ** (eta + 1.0)
    up = 2.0 * (1.0 - u) + 2.0 * (u - 0.5) * genes ** (eta + 1.0)
    delta = np.where(u < 0.5, down**power - 1.0, 1.0 - up**power)
    return np.clip(np.where(mutate, genes + delta, genes), 0.0, 1.0)


class GeneticAllocation:
    """Per-slot real-coded GA over (b~, xi~), minimising (12) for that slot (see module doc)."""

    name = "schrs"

    def __init__(
        self,
        config: ScenarioConfig,
        catalogue: ModelCatalogue,
        population: int = 32,
        generations: int = 150,
        crossover_eta: float = 15.0,
        mutation_eta: float = 20.0,
        crossover_prob: float = 0.9,
        mutation_prob: float | None = None,
        elites: int = 2,
    ) -> None:
        if population < 2:
            raise ValueError(f"population must be at least 2, got {population}")
        if not 0 <= elites < population:
            raise ValueError(f"elites must lie in [0, population), got {elites}")
        self.catalogue = catalogue
        self.radio = RadioParams.from_config(config)
        self.population = population
        self.generations = generations
        self.crossover_eta = crossover_eta
        self.mutation_eta = mutation_eta
        self.crossover_prob = crossover_prob
        self.mutation_prob = mutation_prob
        self.elites = elites
        self.rng = np.random.default_rng(config.seed)

    def reset(self, seed: np.random.SeedSequence) -> None:
        self.rng = np.random.default_rng(seed)

    def allocate(self, slot: SlotState, cache: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        served = np.asarray(cache, dtype=bool)[slot.services]
        users = len(served)

        def amend(genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # Sec. 6.2.2
            return amend_allocation(genes, served)

        def cost(genes: np.ndarray) -> np.ndarray:  # -r of eq. (23), lower is better
            outcome = score_slot(self.radio, self.catalogue, slot, cache, *amend(genes))
            return -outcome.reward

        genes = self.rng.random((self.population, 2 * users))
        fitness = cost(genes)
        for _ in range(self.generations):
            genes, fitness = self._next_generation(genes, fitness, cost)
        return amend(genes[np.argmin(fitness)])

    def _next_generation(
        self,
        genes: np.ndarray,
        fitness: np.ndarray,
        cost: Callable[[np.ndarray], np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Elites survive; the rest are mutated SBX children of tournament winners."""
        elite = np.argsort(fitness, kind="stable")[: self.elites]
        offspring = self.population - self.elites
        pairs = (offspring + 1) // 2
        parents = genes[self._tournament(fitness, 2 * pairs)]
        child_a, child_b = sbx_crossover(
            self.rng, parents[:pairs], parents[pairs:], self.crossover_eta, self.crossover_prob
        )
        children = polynomial_mutation(
            self.rng,
            np.concatenate([child_a, child_b])[:offspring],
            self.mutation_eta,
            self.mutation_prob if self.mutation_prob is not None else 1.0 / genes.shape[1],
        )
        return (
            np.concatenate([genes[elite], children]),
            np.concatenate([fitness[elite], cost(children)]),
        )

    def _tournament(self, fitness: np.ndarray, count: int) -> np.ndarray:
        """Binary tournaments: the fitter of two random individuals, ``count`` times."""
        pairs = self.rng.integers(0, len(fitness), size=(count, 2))
        first_wins = fitness[pairs[:, 0]] <= fitness[pairs[:, 1]]
        return np.where(first_wins, pairs[:, 0], pairs[:, 1])
