"""The slot-level observation of eq. (21), owned by one encoder/decoder.

``s_t(k) = {h, phi, rho, d_in, d_op}`` as a float32 vector of 4U + M values in [0, 1]:

=============  ==========  =================================================================
index          symbol      value (unit, range before scaling)
=============  ==========  =================================================================
0 .. U-1       h_u         channel gain 10 log10(h_u) in dB, mapped from [-160, -40] onto
                           [0, 1] and clipped
U .. 2U-1      phi_u       requested service (model index 0..M-1) / (M - 1)
2U .. 2U+M-1   rho_m       1 if model m is cached, else 0
2U+M .. 3U+M-1 d_in,u      input size in bits / the largest d_in of the scenario, clipped
3U+M .. 4U+M-1 d_op,u      output size of the requested model in bits / the largest d_op
=============  ==========  =================================================================

Agents that need a part of the state back call :meth:`ObservationCodec.decode` (never
slice the vector by hand); what an agent must act on exactly, such as which users are
served at the edge, it takes from the slot itself, not from the normalised vector.
"""

from __future__ import annotations

import numpy as np

from testbed.core.config import BITS_PER_MB, ModelCatalogue, ScenarioConfig
from testbed.core.records import SlotState

GAIN_DB_RANGE = (-160.0, -40.0)
"""Channel gains 10 log10(h) are mapped linearly from this range onto [0, 1] (clipped)."""


class ObservationCodec:
    """Encodes (slot, cache) into the eq. (21) vector of one scenario, and decodes it."""

    def __init__(self, config: ScenarioConfig, catalogue: ModelCatalogue) -> None:
        self.num_users = config.network.num_users
        self.num_models = config.catalogue.num_models
        self.output_bits = catalogue.output_bits
        self.input_max_bits = config.network.input_size_mb[1] * BITS_PER_MB
        self.output_max_bits = config.catalogue.output_size_mb[1] * BITS_PER_MB

    @property
    def size(self) -> int:
        """4U + M."""
        return 4 * self.num_users + self.num_models

    def raw(self, slot: SlotState, cache: np.ndarray) -> dict[str, np.ndarray]:
        """The raw state of eq. (21): h, phi, rho, d_in, d_op."""
        return {
            "channel_gain": slot.channel_gain,
            "services": slot.services,
            "cache": np.array(cache, dtype=bool),
            "input_bits": slot.input_bits,
            "output_bits": self.output_bits[slot.services],
        }

    def encode_raw(self, state: dict[str, np.ndarray]) -> np.ndarray:
        """The raw state as the float32 vector of the table above."""
        lo_db, hi_db = GAIN_DB_RANGE
        gain_db = 10.0 * np.log10(np.maximum(state["channel_gain"], 1e-300))
        parts = (
            np.clip((gain_db - lo_db) / (hi_db - lo_db), 0.0, 1.0),
            state["services"] / max(self.num_models - 1, 1),
            state["cache"].astype(float),
            np.clip(state["input_bits"] / self.input_max_bits, 0.0, 1.0),
            np.clip(state["output_bits"] / self.output_max_bits, 0.0, 1.0),
        )
        return np.concatenate(parts).astype(np.float32)

    def encode(self, slot: SlotState, cache: np.ndarray) -> np.ndarray:
        """The normalised eq. (21) vector an agent sees for a slot and a cache."""
        return self.encode_raw(self.raw(slot, cache))

    def decode(self, observation: np.ndarray) -> dict[str, np.ndarray]:
        """The raw state back from a vector (gains and sizes only within their clip ranges).

        Works on one vector or a batch (leading axes).
        """
        obs = np.asarray(observation, dtype=float)
        if obs.shape[-1] != self.size:
            raise ValueError(f"observation has {obs.shape[-1]} values, expected {self.size}")
        u, m = self.num_users, self.num_models
        lo_db, hi_db = GAIN_DB_RANGE
        gain_db = lo_db + obs[..., :u] * (hi_db - lo_db)
        return {
            "channel_gain": 10.0 ** (gain_db / 10.0),
            "services": np.rint(obs[..., u : 2 * u] * max(m - 1, 1)).astype(int),
            "cache": obs[..., 2 * u : 2 * u + m] > 0.5,
            "input_bits": obs[..., 2 * u + m : 3 * u + m] * self.input_max_bits,
            "output_bits": obs[..., 3 * u + m :] * self.output_max_bits,
        }
