"""The users' node of the live loop: U emulated users behind ``testbed.v1.Users``.

The controller draws the world through this node and hands it each slot's allocation:

==============  ====================================================  =========================
RPC             what the node does                                    refused with
==============  ====================================================  =========================
Describe        the scenario it serves: the keys that shape the       never
                world and their hash (``testbed.proto.scenario``)
BeginEpisode    reseeds its :class:`~ue_emulator.world.World` with    INVALID_ARGUMENT
                the message's ``SeedSequence(entropy, spawn_key)``    (``world_seed``)
BeginFrame      gamma(t) of the next frame (eq. (37))                 FAILED_PRECONDITION
                                                                      before an episode
NextSlot        the next slot's positions, channels, requests and     FAILED_PRECONDITION
                sizes: the simulator's draws, bit for bit             before BeginFrame, after
                                                                      the K-th slot
ServeSlot       every user uploads, is served, downloads and scores   FAILED_PRECONDITION (no
                what came back (below)                                slot, served, another
                                                                      slot), INVALID_ARGUMENT
                                                                      (the field named),
                                                                      RESOURCE_EXHAUSTED (d_in
                                                                      or d_op over the limit)
==============  ====================================================  =========================

Every refusal names the field; the node keeps serving, and a refused ServeSlot leaves its slot
unserved, so a corrected call still serves it.

**A user in ServeSlot**, one thread each, so the edge serves them as their uploads complete:

1. makes its request: a held-out patch of its model's source (``catalogue.sources``, by
   default the model's own; at a checkpoint's ``sample_size``) with a seeded mask
   (``make_requests``), seeded by :func:`testbed.core.seeding.request_seed` from the
   episode's world seed, the frame, the slot and the user, so a live run is reproducible;
2. opens ``testbed.v1.Edge/Generate`` with a deadline of ``request_timeout_s`` (shortened to
   what is left of ServeSlot's own) and sends a ``RequestHeader``, then the float32 image
   (HWC) and mask (HW) plus zero filler up to d_in, paced at its eq. (2) rate
   (``testbed.proto.streams``); the radio upload is the pacer's emulated time. A d_in (d_op)
   smaller than the image and mask (the image) is raised to it, with a warning in the log;
3. receives the ``ResultHeader`` and the generated image plus filler (paced by the edge at
   the eq. (5) rate); the radio download runs from the header's arrival to the last byte
   (wall seconds x ``time_scale``);
4. scores the image against the ground truth and mask it kept (every quality measure of
   ``ue_emulator.quality``: TV, hole MAE; and PSNR, SSIM) and reports:
   ``uplink_s`` = radio upload + backhaul up, ``downlink_s`` = backhaul down + radio
   download (eqs. (4), (6)); generation and waiting as the edge measured them.

A user's ``failure`` is empty when it was served, else one of:

* ``"<STATUS_CODE>: the edge at <address>: <details>"`` (``the cloud at`` while relayed):
  the call failed (e.g. ``UNAVAILABLE`` for an edge that is down, ``DEADLINE_EXCEEDED``
  after ``request_timeout_s``);
* ``"<STATUS_CODE>: <details>"``: refused here with nothing sent (``DEADLINE_EXCEEDED``
  when the paced transfers at its rates alone would take longer than its deadline);
* ``"NO_BANDWIDTH"``: its uplink rate is 0 (bandwidth share b_u = 0), so it cannot upload
  this slot; nothing is sent and its delays are left at 0 for the controller to cap;
* ``"BAD_REPLY: <details>"``: the edge's reply broke the protocol (no header first, another
  request's id, wrong shape or byte count, values outside [0, 1]).

A failed user never affects the slot's other users, and ServeSlot itself still succeeds.
Memory per user is bounded by its image: filler is made and dropped chunk by chunk.
"""

from __future__ import annotations

import io
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import grpc
import numpy as np

from testbed.core.config import ConfigError, ScenarioConfig, build_catalogue, is_model_path
from testbed.core.records import SlotState
from testbed.core.seeding import request_seed
from testbed.proto import cloud_pb2_grpc, common_pb2, edge_pb2_grpc, users_pb2, users_pb2_grpc
from testbed.proto.relay import forward_to_cloud, round_trip
from testbed.proto.runtime import LOOPBACK, NodeServer, Pacer, channel, chunks, serve_servicer
from testbed.proto.scenario import describe
from testbed.proto.security import Security, check_listen
from testbed.proto.slots import slot_message
from testbed.proto.streams import Refusal, image_bytes, mask_bytes, paced_wall_s, shown
from ue_emulator.requests import UserRequest, checkpoint_size_px, make_requests
from ue_emulator.sources import PATCH_SIZE_PX, SOURCE_LOADERS
from ue_emulator.wire import validate_allocation_message, world_seed_from_message
from ue_emulator.world import World

log = logging.getLogger(__name__)

SERVICE_NAME = "testbed.v1.Users"
DEFAULT_EDGE_ADDRESS = f"{LOOPBACK}:50051"
"""Where the edge listens unless told otherwise (gRPC's customary port)."""
NO_BANDWIDTH = "NO_BANDWIDTH"
BAD_REPLY = "BAD_REPLY"
LINK_FIELDS = ("backhaul_up_rate_bps", "backhaul_down_rate_bps", "time_scale", "link_loss")
"""Fields of a slot's allocation that every request header of the slot carries."""


class BadReply(Exception):
    """The edge's reply broke the protocol (recorded as the user's ``BAD_REPLY`` failure)."""


def png_bytes(image: np.ndarray) -> bytes:
    """An HWC image in [0, 1] as PNG bytes (matplotlib's writer, which needs no figure)."""
    from matplotlib import image as mpimg

    buffer = io.BytesIO()
    mpimg.imsave(buffer, np.clip(image, 0.0, 1.0), format="png")
    return buffer.getvalue()


@dataclass(frozen=True)
class Delivery:
    """What came back for one request."""

    result: common_pb2.ResultHeader
    image: np.ndarray
    """The generated image, HWC float32 in [0, 1]."""
    radio_up_s: float
    """Emulated seconds of the radio upload (eq. (2)'s delay, measured)."""
    radio_down_s: float
    """Emulated seconds from the result header's arrival to the last byte (eq. (5))."""


def request_kinds(config: ScenarioConfig) -> dict[str, tuple[str, int]]:
    """Per catalogue model (by name), the source its users' requests come from and their side
    in px: ``catalogue.sources`` (default each model's label), at the checkpoint's
    ``sample_size`` for a checkpoint folder of ``catalogue.models`` and the zoo's 32 px for
    a zoo model. Raises ConfigError naming a model whose source is not an image source."""
    names = build_catalogue(config.catalogue).names
    entries = config.catalogue.model_entries(names)
    sources = config.catalogue.model_sources(names)
    unknown = [
        name for name, source in zip(names, sources, strict=True) if source not in SOURCE_LOADERS
    ]
    if unknown:
        key = "catalogue.sources" if config.catalogue.sources else "catalogue.profile"
        raise ConfigError(
            f"{key}: models {unknown} are not image sources ({', '.join(SOURCE_LOADERS)}); "
            "the users' node draws each request from its model's source (catalogue.sources "
            "gives one per model)"
        )
    try:
        return {
            name: (source, checkpoint_size_px(entry) if is_model_path(entry) else PATCH_SIZE_PX)
            for name, entry, source in zip(names, entries, sources, strict=True)
        }
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class UsersServicer(users_pb2_grpc.UsersServicer):
    """``testbed.v1.Users``: validates each call and delegates to the world and the users.

    ``edge_address`` (``host:port``) is the edge every user uploads to.
    """

    def __init__(
        self,
        config: ScenarioConfig,
        edge_address: str,
        cloud_address: str | None = None,
        security: Security | None = None,
    ) -> None:
        self.catalogue = build_catalogue(config.catalogue)
        self.description = describe(config)
        self.requests = request_kinds(config)
        self.total_steps = config.catalogue.total_steps
        self.world = World(config)
        self.edge_address, self.cloud_address = edge_address, cloud_address
        self._channel = channel(edge_address, security)
        self._edge = edge_pb2_grpc.EdgeStub(self._channel)
        # the relay of an edge that is down (relay_to_cloud): the base station to the cloud
        self._cloud_channel = channel(cloud_address, security) if cloud_address else None
        self._cloud = cloud_pb2_grpc.CloudStub(self._cloud_channel) if self._cloud_channel else None
        # One lock orders the world's calls and the claim of a slot: ServeSlot serves outside
        # it, from a snapshot, so the next NextSlot never waits for a slot's traffic.
        self._lock = threading.Lock()
        self._world_seed: np.random.SeedSequence | None = None
        self._slot: SlotState | None = None
        self._served = False

    def warm_up(self) -> None:
        """Load every catalogue source, the scoring code (torch, piq) and the PNG writer once,
        so that the first slot's wall time holds none of their loading (seconds)."""
        from ue_emulator.quality import score_outputs

        for source, size_px in self.requests.values():
            request = make_requests(source, 1, seed=0, size_px=size_px)[0]
        score_outputs(
            request.request.masked_image[None],
            request.ground_truth[None],
            request.request.mask[None],
        )
        png_bytes(request.ground_truth)

    def close(self) -> None:
        """Close the channels to the edge and the cloud."""
        self._channel.close()
        if self._cloud_channel is not None:
            self._cloud_channel.close()

    def Describe(
        self, request: common_pb2.DescribeRequest, context: grpc.ServicerContext
    ) -> common_pb2.ScenarioDescription:
        del request, context
        return self.description

    def BeginEpisode(
        self, request: users_pb2.EpisodeRequest, context: grpc.ServicerContext
    ) -> users_pb2.EpisodeReply:
        try:
            seed = world_seed_from_message(request.world_seed)
        except Refusal as refusal:
            context.abort(refusal.code, refusal.message)
        with self._lock:
            self.world.reset(seed)
            self._world_seed, self._slot = seed, None
        return users_pb2.EpisodeReply(num_users=self.world.num_users)

    def BeginFrame(
        self, request: users_pb2.FrameRequest, context: grpc.ServicerContext
    ) -> users_pb2.FrameState:
        del request
        with self._lock:
            if self._world_seed is None:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "BeginFrame before BeginEpisode")
            frame = self.world.begin_frame()
            self._slot = None
        return users_pb2.FrameState(
            frame=frame.frame, popularity_index=frame.popularity_index, gamma=frame.gamma
        )

    def NextSlot(
        self, request: users_pb2.SlotRequest, context: grpc.ServicerContext
    ) -> users_pb2.SlotState:
        del request
        with self._lock:
            try:
                slot = self.world.next_slot()
            except RuntimeError as exc:
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"NextSlot out of order: {exc} (BeginFrame starts the next frame)",
                )
            self._slot, self._served = slot, False
        return slot_message(slot)

    def ServeSlot(
        self, request: users_pb2.SlotAllocation, context: grpc.ServicerContext
    ) -> users_pb2.SlotReport:
        with self._lock:
            slot, seed = self._claim(request, context)
        # The users' calls end no later than this one: work past its deadline is wasted.
        remaining_s = context.time_remaining()
        timeout_s = request.request_timeout_s
        if remaining_s is not None:
            timeout_s = min(timeout_s, remaining_s)
        with ThreadPoolExecutor(len(request.users), thread_name_prefix="user") as pool:
            reports = list(
                pool.map(
                    lambda user: self._serve_user(user, request, slot, seed, timeout_s),
                    range(len(request.users)),
                )
            )
        return users_pb2.SlotReport(users=reports)

    def _claim(
        self, request: users_pb2.SlotAllocation, context: grpc.ServicerContext
    ) -> tuple[SlotState, np.random.SeedSequence]:
        """Check the call against the current slot and mark the slot served (lock held)."""
        slot = self._slot
        if slot is None or self._world_seed is None:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "ServeSlot before NextSlot: no slot drawn"
            )
        if (request.frame, request.slot) != (slot.frame, slot.slot):
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"frame, slot = {request.frame}, {request.slot}: the current slot is "
                f"{slot.frame}, {slot.slot}",
            )
        if self._served:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"slot {slot.slot} of frame {slot.frame} is already served; NextSlot draws another",
            )
        try:
            validate_allocation_message(request, slot, self.catalogue, self.total_steps)
        except Refusal as refusal:
            context.abort(refusal.code, refusal.message)
        self._served = True
        return slot, self._world_seed

    def _serve_user(
        self,
        user: int,
        request: users_pb2.SlotAllocation,
        slot: SlotState,
        world_seed: np.random.SeedSequence,
        timeout_s: float,
    ) -> users_pb2.UserReport:
        """One user's request, from its making to its score; failures become its report."""
        wanted = request.users[user]
        seed = request_seed(world_seed, slot.frame, slot.slot, user)
        source, size_px = self.requests[wanted.model]
        made = make_requests(source, 1, seed, size_px=size_px)[0]
        report = users_pb2.UserReport()
        gallery = user < request.gallery_users
        if gallery:
            report.upload_png = png_bytes(made.request.masked_image)
            report.truth_png = png_bytes(made.ground_truth)
        if wanted.uplink_rate_bps == 0:
            report.failure = NO_BANDWIDTH
            return report
        request_id = f"e{request.episode}-f{slot.frame}-s{slot.slot}-u{user}"
        try:
            delivery = self._round_trip(request_id, made, request, user, timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            peer = (
                f"the cloud at {self.cloud_address}"
                if request.relay_to_cloud
                else f"the edge at {self.edge_address}"
            )
            report.failure = f"{code.name}: {peer}: {details}"
        except BadReply as exc:
            report.failure = f"{BAD_REPLY}: {exc}"
        except Refusal as refusal:
            report.failure = f"{refusal.code.name}: {refusal.message}"
        else:
            self._report_served(report, delivery, made)
            if gallery:
                report.output_png = png_bytes(delivery.image)
        if report.failure:
            log.info("%s failed: %s", request_id, report.failure)
        return report

    def _round_trip(
        self,
        request_id: str,
        made: UserRequest,
        request: users_pb2.SlotAllocation,
        user: int,
        timeout_s: float,
    ) -> Delivery:
        """Upload ``made`` to the edge, or relay it to the cloud while the edge is down, and
        receive its output (raises RpcError, BadReply, and Refusal for transfers that cannot
        end within ``timeout_s``)."""
        wanted = request.users[user]
        header = request_header(request_id, made, wanted, request)
        _check_links_in_time(header, wanted, request.relay_to_cloud, timeout_s)
        image, mask = made.request.masked_image, made.request.mask
        if request.relay_to_cloud:
            return self._relay(header, image, mask, wanted, timeout_s)
        try:
            reply, radio_up_s = round_trip(
                self._edge, header, image, mask, wanted.uplink_rate_bps, timeout_s
            )
        except ValueError as exc:
            raise BadReply(str(exc)) from None
        if reply.header.request_id != request_id:
            raise BadReply(f"request_id {shown(reply.header.request_id)}, sent {request_id!r}")
        radio_down_s = (reply.completed_s - reply.started_s) * request.time_scale
        return Delivery(reply.header, reply.image, radio_up_s, radio_down_s)

    def _relay(
        self,
        header: common_pb2.RequestHeader,
        image: np.ndarray,
        mask: np.ndarray,
        wanted: users_pb2.UserAllocation,
        timeout_s: float,
    ) -> Delivery:
        """The edge is down: the base station relays the request straight to the cloud,
        store and forward. The radio hop (at the user's eq. (2) rate) ends at the base
        station, emulated here; the backhaul carries it to the cloud at R_bc, the cloud's
        reply comes back at R_cb (`testbed.proto.relay.forward_to_cloud`), and the radio hop
        down runs at the eq. (5) rate."""
        if self._cloud is None:
            raise BadReply("relay_to_cloud: this users' node was started without --cloud")
        radio_up_s = _paced_hop_s(header, header.input_bytes, wanted.uplink_rate_bps, seed=0)
        try:
            result, output = forward_to_cloud(self._cloud, header, image, mask, timeout_s)
        except ValueError as exc:
            raise BadReply(str(exc)) from None
        radio_down_s = _paced_hop_s(header, header.output_bytes, header.downlink_rate_bps, seed=3)
        return Delivery(result, output, radio_up_s, radio_down_s)

    @staticmethod
    def _report_served(report: users_pb2.UserReport, delivery: Delivery, made: UserRequest) -> None:
        """Delays and scores of a served request (eqs. (4), (6): backhaul on both links)."""
        from ue_emulator.quality import score_outputs

        result = delivery.result
        scores = score_outputs(
            delivery.image[None], made.ground_truth[None], made.request.mask[None]
        )
        report.uplink_s = delivery.radio_up_s + result.backhaul_up_s
        report.downlink_s = result.backhaul_down_s + delivery.radio_down_s
        report.backhaul_up_s = result.backhaul_up_s
        report.backhaul_down_s = result.backhaul_down_s
        report.backhaul_s = result.backhaul_up_s + result.backhaul_down_s
        report.generation_s = result.generation_s
        report.wait_s = result.wait_s
        report.served_by = result.served_by
        report.steps_run = result.steps_run
        report.unet_calls = result.unet_calls
        report.tv = float(scores.tv[0])
        report.hole_mae = float(scores.hole_mae[0])
        report.psnr_db = float(scores.psnr_db[0])
        report.ssim = float(scores.ssim[0])


def request_header(
    request_id: str,
    made: UserRequest,
    wanted: users_pb2.UserAllocation,
    allocation: users_pb2.SlotAllocation,
) -> common_pb2.RequestHeader:
    """The header of one user's request: its model, steps and downlink rate, the slot's
    `LINK_FIELDS`, and d_in, d_op. A d_in or d_op too small for the image (and mask) is
    raised to it, with a warning: images travel whole, and the edge refuses a request whose
    bytes cannot hold them."""
    shape = made.request.masked_image.shape
    input_bytes = max(wanted.input_bytes, image_bytes(shape) + mask_bytes(shape))
    output_bytes = max(wanted.output_bytes, image_bytes(shape))
    if (input_bytes, output_bytes) != (wanted.input_bytes, wanted.output_bytes):
        log.warning(
            "%s: d_in, d_op = %d, %d bytes raised to %d, %d to carry the images whole",
            request_id,
            wanted.input_bytes,
            wanted.output_bytes,
            input_bytes,
            output_bytes,
        )
    height_px, width_px, channels = shape
    return common_pb2.RequestHeader(
        request_id=request_id,
        model=wanted.model,
        steps=wanted.steps,
        height_px=height_px,
        width_px=width_px,
        channels=channels,
        noise_seed=made.request.seed,
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        downlink_rate_bps=wanted.downlink_rate_bps,
        **{name: getattr(allocation, name) for name in LINK_FIELDS},
    )


def _check_links_in_time(
    header: common_pb2.RequestHeader,
    wanted: users_pb2.UserAllocation,
    relayed: bool,
    timeout_s: float,
) -> None:
    """DEADLINE_EXCEEDED, before anything is sent, when the paced transfers of a request
    cannot end within ``timeout_s``: a pacer's sleep cannot be cut short, so such transfers
    (1 bit/s; a rate x time_scale that underflows to 0) would hold this node's threads long
    after it, or crash the pacer. Such a request fails as it would have. ``relayed``: this
    node paces the backhaul too."""
    input_bytes, output_bytes = header.input_bytes, header.output_bytes
    links = [(input_bytes, wanted.uplink_rate_bps), (output_bytes, wanted.downlink_rate_bps)]
    if relayed:
        links += [
            (input_bytes, header.backhaul_up_rate_bps),
            (output_bytes, header.backhaul_down_rate_bps),
        ]
    paced_s = sum(paced_wall_s(nbytes, rate, header.time_scale) for nbytes, rate in links)
    if not paced_s <= timeout_s:
        raise Refusal(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"links: {paced_s:.3g} s of paced transfers at the allocated rates x time_scale "
            f"{header.time_scale:g}, over the request's {timeout_s:.3g} s; nothing sent",
        )


def _paced_hop_s(
    header: common_pb2.RequestHeader, nbytes: int, rate_bps: float, seed: int
) -> float:
    """Emulated seconds of a radio hop of the base station, paced here without data:
    ``nbytes`` at ``rate_bps`` x time_scale with the header's link loss (the loss draw seeded
    by the request's ``noise_seed`` plus ``seed``)."""
    pacer = Pacer(rate_bps, header.time_scale, header.link_loss, header.noise_seed + seed)
    for part in chunks(b"", nbytes):
        pacer.sent(len(part))
    return pacer.emulated_s()


def serve(
    config: ScenarioConfig,
    listen: str = f"{LOOPBACK}:0",
    edge: str = DEFAULT_EDGE_ADDRESS,
    cloud: str | None = None,
    security: Security | None = None,
) -> NodeServer:
    """Start the users' node on ``listen`` (loopback, a free port by default), its users
    uploading to the edge at ``edge``; returns once it answers SERVING. ``security`` secures
    its server and its channels to the edge and the cloud (`testbed.proto.security`).

    Raises ConfigError when a catalogue model has no image source to draw requests from.
    """
    check_listen(listen, security)
    servicer = UsersServicer(config, edge, cloud, security)
    with ExitStack() as owned:
        owned.callback(servicer.close)
        servicer.warm_up()
        add = users_pb2_grpc.add_UsersServicer_to_server
        return serve_servicer(add, servicer, SERVICE_NAME, listen, security, owned)
