"""A slot of the world on the wire and back: the users' node sends each slot it draws as a
``users_pb2.SlotState`` (:func:`slot_message`), the live controller reads it back into the
`testbed.core.records.SlotState` the policies and the system model take
(:func:`slot_from_message`). Every per-user array crosses as a repeated field, positions
flattened as x0, y0, x1, y1, ...; the round trip is exact (doubles and integers)."""

from __future__ import annotations

import numpy as np

from testbed.core.records import SlotState
from testbed.proto import users_pb2


def slot_message(slot: SlotState) -> users_pb2.SlotState:
    """``slot`` as it crosses the wire."""
    return users_pb2.SlotState(
        frame=slot.frame,
        slot=slot.slot,
        popularity_index=slot.popularity_index,
        gamma=slot.gamma,
        location_state=slot.location_state,
        positions_m=slot.positions_m.ravel().tolist(),
        distance_m=slot.distance_m.tolist(),
        fading_power=slot.fading_power.tolist(),
        channel_gain=slot.channel_gain.tolist(),
        services=slot.services.tolist(),
        input_bits=slot.input_bits.tolist(),
    )


def slot_from_message(message: users_pb2.SlotState) -> SlotState:
    """The slot a :func:`slot_message` carries: float arrays, services as int64."""
    return SlotState(
        frame=message.frame,
        slot=message.slot,
        popularity_index=message.popularity_index,
        gamma=message.gamma,
        location_state=message.location_state,
        positions_m=np.asarray(message.positions_m, dtype=float).reshape(-1, 2),
        distance_m=np.asarray(message.distance_m, dtype=float),
        fading_power=np.asarray(message.fading_power, dtype=float),
        channel_gain=np.asarray(message.channel_gain, dtype=float),
        services=np.asarray(message.services, dtype=np.int64),
        input_bits=np.asarray(message.input_bits, dtype=float),
    )
