"""Every seeding role of the testbed, in one place.

One run seed drives every random draw. Each consumer derives its own
:class:`numpy.random.SeedSequence` from the run seed and a role, so that the users' world
is exogenous (the same for every policy) and no two consumers share a stream:

===========================================  ==============================================
seed sequence                                what draws from it
===========================================  ==============================================
``[seed, episode]``                          the world of an evaluated episode (every policy)
``[seed, episode, 1]``                       a caching policy's own draws in that episode
``[seed, episode, 2]``                       an allocation policy's own draws in that episode
``[seed, 0, 3] + popularity index``          the optimiser's sample slots (a fixed yardstick)
``[seed, episode, 7]``                       the world of a training episode of T2DRL
``[seed, 1]``                                the T2DRL agents' networks and exploration
``[world seed, 2]``                          the allocation policy inside ``ModelCaching-v0``
``[seed + 1000, episode]``                   evaluation worlds of a trained run (unseen)
world seed, spawn key ``+ [8, t, k, u]``     the request image of user u in slot k of frame
                                             t (the live users' node: patch, mask, noise)
===========================================  ==============================================

Inside the world, the sequence is spawned into one stream per component (popularity,
location, placement, fading, requests, inputs; see ``ue_emulator.world``).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Role(IntEnum):
    """The third entry of a seed sequence ``[seed, episode, role]`` (REQUESTS: the first entry
    added to a world seed's spawn key, see :func:`request_seed`)."""

    CACHING = 1
    ALLOCATION = 2
    OPTIMAL_SAMPLES = 3
    TRAINING_WORLD = 7
    REQUESTS = 8


EVAL_SEED_OFFSET = 1000
"""Learned policies are evaluated on run seed ``seed + 1000``: worlds their training never saw
(training worlds use ``[seed, episode, 7]``, evaluated episodes ``[seed + 1000, episode]``)."""


def episode_seed(run_seed: int, episode: int) -> np.random.SeedSequence:
    """The world of episode ``episode`` of run ``run_seed``: independent of earlier episodes."""
    return np.random.SeedSequence([run_seed, episode])


def policy_seed(run_seed: int, episode: int, role: Role) -> np.random.SeedSequence:
    """A policy's own draws in an episode (role CACHING or ALLOCATION)."""
    return np.random.SeedSequence([run_seed, episode, int(role)])


def training_world_seed(run_seed: int, episode: int) -> np.random.SeedSequence:
    """The world of training episode ``episode``: apart from every evaluated episode."""
    return np.random.SeedSequence([run_seed, episode, int(Role.TRAINING_WORLD)])


def optimal_samples_seed(run_seed: int, popularity_index: int) -> np.random.SeedSequence:
    """The optimiser's sample slots at one popularity state (apart from every episode)."""
    base = np.random.SeedSequence([run_seed, 0, int(Role.OPTIMAL_SAMPLES)])
    return np.random.SeedSequence(base.entropy, spawn_key=(*base.spawn_key, popularity_index))


def agent_seeds(run_seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """The (allocator, caching agent) seeds of a T2DRL instance."""
    allocator, caching = np.random.SeedSequence([run_seed, 1]).spawn(2)
    return allocator, caching


def env_allocation_seed(world_seed: int) -> np.random.SeedSequence:
    """The allocation policy's draws inside ``ModelCaching-v0`` after ``reset(seed=...)``."""
    return np.random.SeedSequence([world_seed, int(Role.ALLOCATION)])


def request_seed(world_seed: np.random.SeedSequence, frame: int, slot: int, user: int) -> int:
    """The request of user ``user`` in slot ``slot`` of frame ``frame`` of the world
    ``world_seed``: its held-out patch, mask and RePaint noise (``make_requests``' seed).

    A child of the world's own sequence (its spawn key extended by ``[8, frame, slot, user]``),
    so requests follow the world's seed yet never share a stream with the world's components,
    whose spawn keys are one entry longer than the world's, not four.
    """
    key = (*world_seed.spawn_key, int(Role.REQUESTS), frame, slot, user)
    child = np.random.SeedSequence(world_seed.entropy, spawn_key=key)
    return int(child.generate_state(1, dtype=np.uint32)[0])
