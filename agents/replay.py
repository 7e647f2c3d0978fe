"""A uniform replay buffer on preallocated numpy arrays (buffers E and F of Algorithm 1)."""

from __future__ import annotations

import numpy as np

_FIELDS = ("states", "actions", "rewards", "next_states", "dones")
_MASK_FIELDS = ("masks", "next_masks")
_TARGET_FIELDS = ("targets",)


class ReplayBuffer:
    """Ring buffer of transitions (s, a, r, s', done); ``sample`` draws uniformly.

    With ``mask_dim`` > 0 each transition also holds a mask of s and of s' (T2DRL: which
    users are served at the edge, rho_{phi_u}, taken from the slot, for the amender). With
    ``target_dim`` > 0 it also holds a teacher's action for s (behaviour cloning).
    """

    def __init__(
        self,
        capacity: int,
        state_dim: int,
        action_dim: int,
        action_dtype=np.float32,
        mask_dim: int = 0,
        target_dim: int = 0,
    ):
        if capacity < 1:
            raise ValueError(f"replay capacity = {capacity} is out of range: allowed [1, inf)")
        self.capacity = capacity
        self.states = np.zeros((capacity, state_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, action_dim), dtype=action_dtype)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.next_states = np.zeros((capacity, state_dim), dtype=np.float32)
        self.dones = np.zeros(capacity, dtype=np.float32)
        self.masks = np.zeros((capacity, mask_dim), dtype=np.float32)
        self.next_masks = np.zeros((capacity, mask_dim), dtype=np.float32)
        self.targets = np.zeros((capacity, target_dim), dtype=np.float32)
        self.fields = (
            _FIELDS + (_MASK_FIELDS if mask_dim else ()) + (_TARGET_FIELDS if target_dim else ())
        )
        self.position = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        state,
        action,
        reward: float,
        next_state,
        done: bool = False,
        mask=0.0,
        next_mask=0.0,
        target=0.0,
    ) -> None:
        i = self.position
        self.states[i] = state
        self.actions[i] = action
        self.rewards[i] = reward
        self.next_states[i] = next_state
        self.dones[i] = float(done)
        self.masks[i] = mask
        self.next_masks[i] = next_mask
        self.targets[i] = target
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
        index = rng.integers(0, self.size, size=batch_size)
        return {name: getattr(self, name)[index] for name in self.fields}

    def arrays(self) -> dict[str, np.ndarray]:
        """The filled slots as stored (ring order) plus the write position, for checkpoints."""
        out = {name: getattr(self, name)[: self.size] for name in self.fields}
        out["position"] = np.array([self.position], dtype=np.int64)
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        count = len(arrays["rewards"])
        if count > self.capacity:
            raise ValueError(f"{count} stored transitions exceed the capacity {self.capacity}")
        missing = [name for name in self.fields if name not in arrays]
        if missing:
            raise ValueError(f"stored replay buffer lacks {missing}")
        for name in self.fields:
            getattr(self, name)[:count] = arrays[name]
        self.size = count
        self.position = int(arrays["position"][0])
