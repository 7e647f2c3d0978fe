"""The users' world on the users' node, drawn over gRPC, and what a node that stops
answering means to the controller."""

from __future__ import annotations

import grpc
import numpy as np

from testbed.core.records import FrameState, SlotState
from testbed.proto import common_pb2, users_pb2, users_pb2_grpc
from testbed.proto.runtime import DEFAULT_DEADLINE_S
from testbed.proto.slots import slot_from_message


class NodeDied(RuntimeError):
    """A node the run cannot go on without (the users' node) stopped answering."""


def rpc_error_line(exc: grpc.RpcError) -> str:
    """``CODE: details`` of a failed call."""
    return f"{exc.code().name}: {exc.details()}"


class RemoteWorld:
    """The users' world on the users' node, as a ``FrameSource`` of the driver: the same
    world code and seed as ``testbed simulate``. A users' node that stops answering ends
    the run (:class:`NodeDied`)."""

    def __init__(self, users: users_pb2_grpc.UsersStub, deadline_s: float = DEFAULT_DEADLINE_S):
        self.users, self.deadline_s = users, deadline_s

    def _call(self, method: str, request):
        try:
            return getattr(self.users, method)(request, timeout=self.deadline_s)
        except grpc.RpcError as exc:
            raise NodeDied(
                f"the users' node stopped answering its {method}: {rpc_error_line(exc)}"
            ) from exc

    def reset(self, seed: int | np.random.SeedSequence) -> None:
        seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        message = common_pb2.Seed(
            entropy=[int(e) for e in np.atleast_1d(seq.entropy)],
            spawn_key=[int(k) for k in seq.spawn_key],
        )
        self._call("BeginEpisode", users_pb2.EpisodeRequest(world_seed=message))

    def begin_frame(self) -> FrameState:
        reply = self._call("BeginFrame", users_pb2.FrameRequest())
        return FrameState(reply.frame, reply.popularity_index, reply.gamma)

    def next_slot(self) -> SlotState:
        reply = self._call("NextSlot", users_pb2.SlotRequest())
        return slot_from_message(reply)
