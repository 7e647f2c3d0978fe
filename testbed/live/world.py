"""The users' world on the users' node, drawn over gRPC; what a node that stops answering
means to the controller; and the check, before the first slot, that the nodes answer and
serve the controller's scenario."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import numpy as np

from testbed.core.config import ScenarioConfig
from testbed.core.errors import TestbedError
from testbed.core.records import FrameState, SlotState
from testbed.live.nodes import NodeAddresses
from testbed.proto import common_pb2, edge_pb2_grpc, users_pb2, users_pb2_grpc
from testbed.proto.runtime import DEFAULT_DEADLINE_S, channel, wait_until_serving
from testbed.proto.scenario import describe, differing_keys
from testbed.proto.slots import slot_from_message

REACH_TIMEOUT_S = 10.0
"""Longest wait for a running node (``--edge``, ``--users-node``) to answer SERVING and
describe its scenario (s): it is started already, so a longer wait would not help."""


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


class NodeUnreachable(TestbedError):
    """A node did not answer within its deadline, or answered with another scenario."""


def check_nodes(
    nodes: NodeAddresses,
    config: ScenarioConfig,
    labels: tuple[str, str] = ("--users-node", "--edge"),
    timeout_s: float = REACH_TIMEOUT_S,
) -> None:
    """Refuse, in one line naming the node by its ``labels`` (the users' node's, the edge's)
    and its address, a node that does not answer SERVING within ``timeout_s`` or serves
    another scenario than ``config`` (the differing keys named, ``testbed.proto.scenario``)."""
    ours = describe(config)
    for label, address, stub in (
        (labels[0], nodes.users, users_pb2_grpc.UsersStub),
        (labels[1], nodes.edge, edge_pb2_grpc.EdgeStub),
    ):
        theirs = _describe_node(label, address, stub, nodes, timeout_s)
        differing = differing_keys(ours, theirs)
        if differing:
            raise NodeUnreachable(
                f"{label} {address} serves another scenario: {'; '.join(differing)} (start the "
                "nodes with this run's --config and --set, or give the run theirs)"
            )


def _describe_node(
    label: str,
    address: str,
    stub: Callable[[grpc.Channel], object],
    nodes: NodeAddresses,
    timeout_s: float,
) -> common_pb2.ScenarioDescription:
    """The node's health check within ``timeout_s``, then its ``Describe``."""
    try:
        wait_until_serving(address, timeout_s=timeout_s, security=nodes.security)
    except TimeoutError:
        raise NodeUnreachable(
            f"{label} {address}: no node answered SERVING within {timeout_s:g} s"
        ) from None
    with channel(address, nodes.security) as chan:
        try:
            return stub(chan).Describe(common_pb2.DescribeRequest(), timeout=timeout_s)
        except grpc.RpcError as exc:
            raise NodeUnreachable(
                f"{label} {address}: its Describe failed: {rpc_error_line(exc)}"
            ) from None
