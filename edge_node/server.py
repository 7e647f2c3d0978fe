"""The edge node (``testbed.v1.Edge``): a model cache under C, RePaint, forwarding to the cloud.

* ``ApplyCache`` applies a frame's caching decision (eq. (11d)): evicts the models not asked
  for and fills each missing one by streaming its weights from the cloud's ``FetchWeights`` at
  R_cb into the edge's own cache folder (`edge_node.cache`), then loads it from there. Each
  fill's emulated time (wall seconds of the paced stream x time_scale) and bytes come back in
  the report: the paper assumes fills take no time; the live loop measures them.
* ``Generate`` serves one user's request. The upload is checked
  (`testbed.proto.streams.receive_upload`) and complete when its stream ends. If the model is
  held, the request goes to the inference worker (`edge_node.worker`), which batches requests
  of the same model and step count that are ready together; ``steps`` must lie in [0, L],
  and 0 returns the corrupted upload unchanged (the executor's 0-step behaviour, no UNet
  call). If not, the edge forwards the request to the cloud over the backhaul: the same
  header and data paced at R_bc (``backhaul_up_rate_bps``), the cloud's reply paced by the
  cloud at R_cb; the cloud's measurements pass through, with the two backhaul transfers
  measured here (emulated seconds). The reply to the user is paced at its eq. (5) rate.

Every call to the cloud has a deadline; every inbound request is checked before any work.

| RPC | status | when |
|---|---|---|
| Describe | (never refused) | the scenario it serves: keys and hash (`testbed.proto.scenario`) |
| ApplyCache | NOT_FOUND | a name that is not a catalogue model |
| ApplyCache | INVALID_ARGUMENT | a name listed twice; a rate or time_scale not finite and > 0 |
| ApplyCache | RESOURCE_EXHAUSTED | the models' sizes c_m total more than C (11d) |
| ApplyCache | OUT_OF_RANGE | the fills, paced at the rate x time_scale, cannot arrive before |
| | | the call's deadline (checked before anything is evicted) |
| ApplyCache | FAILED_PRECONDITION | another decision is still being applied (a fill runs) |
| ApplyCache | UNAVAILABLE | the cloud is down or too slow during a fill (the model named) |
| ApplyCache | DATA_LOSS | the weights received are unusable (path, size, hash, checkpoint) |
| Generate | INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED | as at the cloud, and steps > L |
| Generate | OUT_OF_RANGE | the reply at downlink_rate_bps, or a forwarded request's backhaul |
| | | transfers, paced x time_scale, cannot arrive before the call's deadline |
| Generate | UNAVAILABLE | a forwarded request's cloud is down or too slow |
| Generate | INTERNAL | the generation failed, or the cloud's reply is malformed |
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

import grpc
import numpy as np

from edge_node.cache import CacheBusy, FillError, ModelCache
from edge_node.worker import InferenceWorker, make_executor, result_header, wait_for
from edge_node.zoo import ZOO_DIR, catalogue_model_dirs, image_shape, transfer_bytes
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.errors import TestbedError
from testbed.core.outputs import check_out_dir
from testbed.proto import cloud_pb2, cloud_pb2_grpc, edge_pb2, edge_pb2_grpc
from testbed.proto.common_pb2 import (
    DescribeRequest,
    DownloadChunk,
    ResultHeader,
    ScenarioDescription,
    UploadChunk,
)
from testbed.proto.relay import forward_to_cloud
from testbed.proto.runtime import DEFAULT_DEADLINE_S, LOOPBACK, NodeServer, channel, serve_servicer
from testbed.proto.scenario import describe
from testbed.proto.security import Security, check_listen
from testbed.proto.streams import (
    ImageShape,
    Refusal,
    Upload,
    check_link_loss,
    check_paced_in_time,
    check_positive,
    receive_upload,
    reply_messages,
    shown,
)

SERVICE_NAME = edge_pb2.DESCRIPTOR.services_by_name["Edge"].full_name
DEFAULT_CLOUD_ADDRESS = f"{LOOPBACK}:50052"
"""Where the edge looks for the cloud unless told otherwise."""
FILL_SLACK_S = 10.0
"""Slack of a fill's deadline beyond twice its expected paced transfer time (s)."""
FORWARD_SLACK_S = DEFAULT_DEADLINE_S
"""Slack of a forwarded request's deadline beyond twice its backhaul transfers: the cloud's
queue and generation (s)."""
CAPACITY_TOLERANCE_GB = 1e-9
"""Rounding slack of the capacity check (11d): sizes are floats."""


class EdgeServicer(edge_pb2_grpc.EdgeServicer):
    """Validates each request, then delegates to the cache, the worker or the cloud."""

    def __init__(
        self,
        config: ScenarioConfig,
        cache: ModelCache,
        shapes: Mapping[str, ImageShape],
        weights_bytes: Mapping[str, int],
        cloud_address: str,
        security: Security | None = None,
    ) -> None:
        catalogue = build_catalogue(config.catalogue)
        self.description = describe(config)
        self.sizes_gb = dict(zip(catalogue.names, map(float, catalogue.size_gb), strict=True))
        self.capacity_gb = config.catalogue.cache_capacity_gb
        self.total_steps = config.catalogue.total_steps
        self.cache = cache
        self.shapes = dict(shapes)
        self.weights_bytes = dict(weights_bytes)
        self.cloud_address = cloud_address
        self._cloud_channel = channel(cloud_address, security)
        self.cloud = cloud_pb2_grpc.CloudStub(self._cloud_channel)

    def close(self) -> None:
        self._cloud_channel.close()

    def Describe(
        self, request: DescribeRequest, context: grpc.ServicerContext
    ) -> ScenarioDescription:
        del request, context
        return self.description

    # ApplyCache ----------------------------------------------------------------------------

    def ApplyCache(
        self, request: edge_pb2.CacheRequest, context: grpc.ServicerContext
    ) -> edge_pb2.CacheReport:
        try:
            self._check_decision(request)
            missing = [model for model in request.models if model not in self.cache.held()]
            check_paced_in_time(
                "backhaul_down_rate_bps",
                sum(self.weights_bytes[model] for model in missing),
                request.backhaul_down_rate_bps,
                request.time_scale,
                context.time_remaining(),
            )
            evicted, fills = self.cache.apply(
                list(request.models), lambda model: self._fetch(model, request, context)
            )
        except Refusal as refusal:
            context.abort(refusal.code, refusal.message)
        except CacheBusy as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"models: {exc}")
        except FillError as exc:
            context.abort(grpc.StatusCode.DATA_LOSS, f"models: a fill from the cloud: {exc}")
        return edge_pb2.CacheReport(
            cached=self.cache.held(),
            evicted=evicted,
            fills=[
                edge_pb2.ModelFill(
                    model=fill.model, bytes=fill.bytes, fill_s=fill.wall_s * request.time_scale
                )
                for fill in fills
            ],
        )

    def _check_decision(self, request: edge_pb2.CacheRequest) -> None:
        check_positive("backhaul_down_rate_bps", request.backhaul_down_rate_bps)
        check_positive("time_scale", request.time_scale)
        check_link_loss("link_loss", request.link_loss)
        for index, model in enumerate(request.models):
            if model not in self.sizes_gb:
                raise Refusal(
                    grpc.StatusCode.NOT_FOUND,
                    f"models: {shown(model)} is not a catalogue model; "
                    f"known: {', '.join(self.sizes_gb)}",
                )
            if model in request.models[:index]:
                raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, f"models: {model!r} listed twice")
        total_gb = sum(self.sizes_gb[model] for model in request.models)
        if total_gb > self.capacity_gb + CAPACITY_TOLERANCE_GB:
            raise Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"models: their sizes c_m total {total_gb:.3f} GB, over the cache capacity "
                f"C = catalogue.cache_capacity_gb = {self.capacity_gb:g} GB (11d)",
            )

    def _fetch(
        self, model: str, request: edge_pb2.CacheRequest, context: grpc.ServicerContext
    ) -> Iterator[cloud_pb2.WeightsChunk]:
        """The cloud's weight stream of ``model``, with a deadline of twice its expected
        paced time plus `FILL_SLACK_S` (within the caller's own); stops if the caller
        goes away."""
        wall_rate_bps = request.backhaul_down_rate_bps * request.time_scale
        timeout_s = FILL_SLACK_S + 2 * 8 * self.weights_bytes[model] / wall_rate_bps
        stream = self.cloud.FetchWeights(
            cloud_pb2.WeightsRequest(
                model=model,
                rate_bps=request.backhaul_down_rate_bps,
                time_scale=request.time_scale,
                link_loss=request.link_loss,
            ),
            timeout=_within(timeout_s, context),
        )
        try:
            for chunk in stream:
                if not context.is_active():
                    raise Refusal(grpc.StatusCode.CANCELLED, f"models: fill of {model!r} cancelled")
                yield chunk
        except grpc.RpcError as exc:
            raise self._cloud_failure(exc, f"filling {model!r}") from None
        finally:
            stream.cancel()  # a fill that stops early (bad weights, caller gone) ends the call

    # Generate ------------------------------------------------------------------------------

    def Generate(
        self, request_iterator: Iterator[UploadChunk], context: grpc.ServicerContext
    ) -> Iterator[DownloadChunk]:
        try:
            upload = receive_upload(request_iterator, self.shapes, self.total_steps)
            header = upload.header
            check_paced_in_time(
                "downlink_rate_bps",
                header.output_bytes,
                header.downlink_rate_bps,
                header.time_scale,
                context.time_remaining(),
            )
            future = self.cache.submit(header.model, upload, header.steps, upload.completed_s)
            if future is None:
                result, image = self._forward(upload, context)
            else:
                generation = wait_for(future, context.time_remaining())
                result, image = result_header(header, generation, "edge"), generation.image
        except Refusal as refusal:
            context.abort(refusal.code, refusal.message)
        yield from reply_messages(
            result,
            image,
            header.downlink_rate_bps,
            header.time_scale,
            header.link_loss,
            seed=header.noise_seed + 1,  # a loss draw of its own, apart from the upload's
        )

    def _forward(
        self, upload: Upload, context: grpc.ServicerContext
    ) -> tuple[ResultHeader, np.ndarray]:
        """Serve ``upload`` at the cloud (`testbed.proto.relay.forward_to_cloud`): upload paced
        at R_bc, reply paced by the cloud at R_cb; returns the cloud's result header with the
        backhaul times measured here."""
        header = upload.header
        for field_name, nbytes in (
            ("backhaul_up_rate_bps", header.input_bytes),
            ("backhaul_down_rate_bps", header.output_bytes),
        ):
            check_paced_in_time(
                field_name,
                nbytes,
                getattr(header, field_name),
                header.time_scale,
                context.time_remaining(),
            )
        links_s = (
            8 * header.input_bytes / header.backhaul_up_rate_bps
            + 8 * header.output_bytes / header.backhaul_down_rate_bps
        ) / header.time_scale
        try:
            return forward_to_cloud(
                self.cloud,
                header,
                upload.masked_image,
                upload.mask,
                timeout_s=_within(FORWARD_SLACK_S + 2 * links_s, context),
            )
        except grpc.RpcError as exc:
            raise self._cloud_failure(exc, f"serving model {header.model!r}") from None
        except ValueError as exc:
            raise Refusal(grpc.StatusCode.INTERNAL, f"the cloud's reply: {exc}") from None

    def _cloud_failure(self, exc: grpc.RpcError, doing: str) -> Refusal:
        """What the edge answers when the cloud fails while ``doing``: a cloud that is down or
        too slow is UNAVAILABLE; any other refusal of the cloud passes through."""
        code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return Refusal(
                grpc.StatusCode.UNAVAILABLE,
                f"cloud at {self.cloud_address} unavailable while {doing}: {code.name}: {details}",
            )
        return Refusal(code, f"the cloud refused {doing}: {details}")


def _within(timeout_s: float, context: grpc.ServicerContext) -> float:
    """``timeout_s``, shortened to what is left of the inbound call's own deadline."""
    remaining_s = context.time_remaining()
    return timeout_s if remaining_s is None else min(timeout_s, remaining_s)


def serve(
    config: ScenarioConfig,
    listen: str = f"{LOOPBACK}:0",
    cloud: str = DEFAULT_CLOUD_ADDRESS,
    device: str | None = None,
    threads: int | None = None,
    cache_dir: Path | None = None,
    security: Security | None = None,
    dtype: str = "float32",
) -> NodeServer:
    """Start the edge node for ``config``'s catalogue on ``listen`` (loopback, any free port
    by default), filling its cache from the cloud at ``cloud`` (``host:port``): RePaint on
    ``device`` (default: cuda if torch sees one, else cpu) with ``threads`` torch CPU threads,
    the catalogue's resampling schedule (its profile's ``[repaint]``) and the UNet in
    ``dtype`` (float32, float16 or bfloat16; float16 not on cpu).

    The cache lives in ``cache_dir/<model>/`` (created if missing; only those folders are
    ever written or deleted), or in a temporary folder removed on stop. Refuses, with a
    `TestbedError`, a catalogue model that is neither a zoo model nor a checkpoint folder
    (``catalogue.models``: the edge reads each model's image shape and weight size from its
    zoo or checkpoint folder, on this host), a ``cache_dir`` inside the zoo, and a
    bad device, thread count or dtype. ``NodeServer.stop`` also stops the worker, closes the
    channel to the cloud and removes a temporary cache folder.

    ``security`` secures both ends (`testbed.proto.security`): the edge's server (TLS, the
    token checked on every call; a non-loopback ``listen`` needs both) and its channel to the
    cloud (the CA that verifies the cloud, the token it sends).
    """
    check_listen(listen, security)
    catalogue = build_catalogue(config.catalogue)
    names = catalogue.names
    model_dirs = catalogue_model_dirs(names, config.catalogue.model_entries(names))
    shapes = {name: image_shape(folder) for name, folder in model_dirs.items()}
    weights_bytes = {name: transfer_bytes(folder) for name, folder in model_dirs.items()}
    if cache_dir is not None:
        _check_cache_dir(cache_dir)
    executor = make_executor(device, threads, catalogue.repaint, dtype)
    with ExitStack() as owned:
        if cache_dir is None:
            cache_dir = Path(owned.enter_context(tempfile.TemporaryDirectory(prefix="edge-cache-")))
        cache_dir.mkdir(parents=True, exist_ok=True)
        worker = InferenceWorker(executor)
        owned.callback(worker.close)
        servicer = EdgeServicer(
            config, ModelCache(cache_dir, worker), shapes, weights_bytes, cloud, security
        )
        owned.callback(servicer.close)
        add = edge_pb2_grpc.add_EdgeServicer_to_server
        return serve_servicer(add, servicer, SERVICE_NAME, listen, security, owned)


def _check_cache_dir(cache_dir: Path) -> None:
    """Refuse a cache folder inside the zoo: an eviction deletes ``cache_dir/<model>``, which
    must never be the zoo's own copy of the model; and one that cannot be made or written
    (it may hold the models of an earlier run)."""
    check_out_dir(cache_dir, flag="--cache-dir", resume=True)
    zoo = ZOO_DIR.resolve()
    if cache_dir.resolve().is_relative_to(zoo):
        raise TestbedError(f"cache_dir {cache_dir}: must lie outside the model zoo ({zoo})")
