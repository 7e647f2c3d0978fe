"""A request's trip to a node that generates and back: the one relay of the edge and the users.

* :func:`round_trip` sends one upload (`streams.upload_messages`, paced here) to a node's
  ``Generate`` and reads its reply to the end (`streams.receive_reply`, paced by that node).
  The users' node uses it to reach the edge.
* :func:`forward_to_cloud` is the backhaul: the same header and data to the cloud at R_bc
  (``backhaul_up_rate_bps``), the cloud's reply paced by the cloud at R_cb; the cloud's
  result header comes back with the two backhaul transfers measured here, in emulated
  seconds. The edge forwards a request whose model it does not hold; the users' node, as the
  base station, relays a request straight to the cloud while the edge is down.

Both raise ``grpc.RpcError`` when the call fails and ValueError (naming the field) when the
reply breaks the protocol: the caller picks what to answer, since each answers its own peer.
"""

from __future__ import annotations

from typing import Protocol

import grpc
import numpy as np

from testbed.proto.common_pb2 import RequestHeader, ResultHeader
from testbed.proto.streams import PacedTransfer, Reply, receive_reply, upload_messages


class GenerateStub(Protocol):
    """A stub with the ``Generate`` stream of the edge or the cloud."""

    Generate: grpc.StreamStreamMultiCallable


def round_trip(
    stub: GenerateStub,
    header: RequestHeader,
    image: np.ndarray,
    mask: np.ndarray,
    rate_bps: float,
    timeout_s: float,
) -> tuple[Reply, float]:
    """Upload ``header``, ``image`` and ``mask`` to ``stub`` paced at ``rate_bps`` x
    ``header.time_scale`` and read the reply: returns it and the upload's emulated seconds.

    The call is cancelled once the reply is read or found malformed (a no-op once it ended),
    so a reply abandoned early never holds the peer's stream.
    """
    upload = PacedTransfer()
    responses = stub.Generate(
        upload_messages(header, image, mask, rate_bps, upload), timeout=timeout_s
    )
    try:
        reply = receive_reply(responses, image.shape, header.output_bytes)
    finally:
        responses.cancel()
    return reply, upload.emulated_s


def forward_to_cloud(
    cloud: GenerateStub,
    header: RequestHeader,
    image: np.ndarray,
    mask: np.ndarray,
    timeout_s: float,
) -> tuple[ResultHeader, np.ndarray]:
    """Serve a request at ``cloud`` over the backhaul: the upload paced at R_bc here, the
    reply paced at R_cb by the cloud. Returns the cloud's result header, with
    ``backhaul_up_s`` and ``backhaul_down_s`` measured here (emulated s), and the image."""
    reply, backhaul_up_s = round_trip(
        cloud, header, image, mask, header.backhaul_up_rate_bps, timeout_s
    )
    result = ResultHeader()
    result.CopyFrom(reply.header)
    result.backhaul_up_s = backhaul_up_s
    result.backhaul_down_s = (reply.completed_s - reply.started_s) * header.time_scale
    return result, reply.image
